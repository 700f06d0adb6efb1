"""Command line: ``anglesim quickstart | run STUDY [key=value …] | status STUDY | figures |
claims | list | bench``; argument parsing and dispatch only (the work is in :mod:`anglesim.study`).

STUDY is a built-in study's name (``anglesim list``), the name of a study in a folder listed in
``$ANGLESIM_STUDIES`` (folders separated by ``os.pathsep``; they add to the built-in studies),
or a path to a study file (``anglesim run path/to/my_study.py``). ``key=value`` arguments
override the study's declared configuration in Hydra's grammar (``kappa=8``,
``phases.finetune.lr=5e-4``, ``grid.kappa=[2,8]``, ``replicates=6``; see
:func:`anglesim.study.parse_overrides`); they are recorded in the Dataset's config and in
the cache key.

Exit codes: 0 success; 1 the study finished but some replicates failed (a summary is printed);
2 bad input (a one-line error naming the problem; nothing cached is deleted); 130 interrupted
(finished replicates stay cached; rerun to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__
from .study import PLAN_PARAMETERS, RUN_PARAMETERS, parse_value
from .validation import AnyOf, Choice, Constraint, Integer, Optional

THREADS = AnyOf(Integer(minimum=1), Choice(["auto"]))
"""``--threads``: torch threads per worker, or "auto"."""
DEFAULT_RESULTS = Path("results")
DEFAULT_FIGURES = Path("figures")
FAILURES_SHOWN = 10


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        # argparse writes "argument --threads: <reason>"; our reasons already name the option
        head, sep, reason = message.partition(": ")
        if sep and head.startswith("argument ") and reason.startswith(head[9:].split("/")[0]):
            message = reason
        self.exit(2, f"anglesim: error: {' '.join(message.split())}\n")


def _option(option: str, constraint: Constraint):
    """An argparse type: the text read as a literal (``3``, ``auto``) and checked against the
    declared ``constraint`` (the one the Python API checks; its value when it allows None, since
    an option given is never None), its error one line."""
    constraint = constraint.inner if isinstance(constraint, Optional) else constraint

    def parse(text: str):
        try:
            return constraint(option, parse_value(text))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} must be {constraint.describe()}, got {text!r}") from None
    parse.__name__ = option
    return parse


def _add_study_options(p: argparse.ArgumentParser) -> None:
    """Options that decide which replicates a study has (shared by run and status)."""
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override the study's configuration, e.g. kappa=8, "
                        "phases.finetune.lr=5e-4, grid.kappa=[2,8], replicates=6")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests and CI")
    p.add_argument("--replicates", default=None,
                   type=_option("--replicates", PLAN_PARAMETERS["replicates"]),
                   help="replicates per condition (default: the study's own; the same as "
                        "the override replicates=N)")
    p.add_argument("--seed", default=0, type=_option("--seed", PLAN_PARAMETERS["seed"]),
                   help="study seed (default 0)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="folder for the Dataset, figure and replicate cache (default results/)")
    p.add_argument("--device", default=None, metavar="DEVICE",
                   type=_option("--device", PLAN_PARAMETERS["device"]),
                   help="torch device the replicates compute on, e.g. cuda (default: the "
                        "CPU); part of the cache key")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    _add_study_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells (conditions × replicates) and which are cached; run "
                        "nothing")
    p.add_argument("--n-jobs", default=None, type=_option("--n-jobs", RUN_PARAMETERS["n_jobs"]),
                   help="parallel workers (default: the number of CPU cores available)")
    p.add_argument("--threads", default=None, metavar="N|auto",
                   type=_option("--threads", THREADS),
                   help="torch threads per worker (default 1, so results do not depend on "
                        "--n-jobs; 'auto': cores // workers)")
    p.add_argument("--backend", choices=["loky", "dask", "slurm"], default=None,
                   help="where workers run: loky processes on this machine (default), a "
                        "dask.distributed cluster, or dask workers in Slurm jobs")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask scheduler address, e.g. tcp://10.0.0.5:8786 (implies --backend "
                        "dask; without it dask starts a local cluster)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute every replicate instead of reusing cached ones")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun replicates recorded as failed in the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    s = p.add_argument_group("Slurm (imply --backend slurm; each overrides --slurm-config)")
    s.add_argument("--slurm-config", type=Path, default=None, metavar="FILE",
                   help="a TOML file with a [slurm] table of the options below (a lab's "
                        "shared settings)")
    s.add_argument("--partition", default=None, help="Slurm partition (default: the "
                   "cluster's)")
    s.add_argument("--account", default=None, help="Slurm account to charge")
    s.add_argument("--cores", default=None, metavar="N",
                   type=_option("--cores", Integer(minimum=1)),
                   help="CPU cores per job, one single-threaded worker each (default 1)")
    s.add_argument("--memory", default=None, metavar="SIZE",
                   help="memory per job, e.g. 4GB (default 4GB)")
    s.add_argument("--walltime", default=None, metavar="TIME",
                   help="time limit per job, e.g. 04:00:00 (default); longer than a replicate")
    s.add_argument("--jobs", default=None, metavar="N",
                   type=_option("--jobs", Integer(minimum=1)),
                   help="Slurm jobs at most, kept running while there is work (default 4)")
    s.add_argument("--sbatch", action="append", default=None, metavar="OPTION",
                   help="an extra #SBATCH option, e.g. --sbatch=--qos=normal (repeatable)")
    s.add_argument("--job-env", action="append", default=None, metavar="KEY=VALUE",
                   help="an environment variable for the jobs (repeatable)")
    s.add_argument("--job-setup", action="append", default=None, metavar="LINE",
                   help="a shell line each job runs first, e.g. 'source venv/bin/activate' "
                        "(repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="anglesim",
        description="Fisher information of networks trained to estimate grating orientation.",
    )
    parser.add_argument("--version", action="version", version=f"anglesim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    q = sub.add_parser("quickstart", help="run the quickstart study and draw its figure")
    _add_run_options(q)
    r = sub.add_parser("run", help="run one study: a name from `anglesim list` or a path to "
                                   "a study file")
    r.add_argument("study", help="study name, or path to a .py file declaring STUDY")
    _add_run_options(r)
    s = sub.add_parser("status", help="what a study has cached, failed and still to run "
                                      "(runs nothing)")
    s.add_argument("study", help="study name, or path to a .py file declaring STUDY")
    _add_study_options(s)
    f = sub.add_parser("figures", help="redraw every figure from saved Datasets (no training)")
    f.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="folder holding the saved Datasets (default results/)")
    f.add_argument("--out", type=Path, default=DEFAULT_FIGURES,
                   help="folder to write the figures to (default figures/)")
    c = sub.add_parser("claims", help="the declared claims stored with saved Datasets, as text "
                                      "or as the results page's RST tables")
    c.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="folder holding the saved Datasets (default results/)")
    c.add_argument("--rst", type=Path, default=None, metavar="FOLDER",
                   help="also write each Dataset's table as FOLDER/<name>.rst")
    sub.add_parser("list", help="list the available studies (built-in and $ANGLESIM_STUDIES)")
    # `anglesim bench …` is handed to anglesim.bench's main by main() before parsing, and the
    # benchmark imported only then; listed here for --help.
    sub.add_parser("bench", add_help=False,
                   help="measure anglesim's speed as ratios against baselines and the "
                        "machine's limits (anglesim bench --help)")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may come before or after the options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


SLURM_OPTIONS = ("slurm_config", "partition", "account", "cores", "memory", "walltime", "jobs",
                 "sbatch", "job_env", "job_setup")


def _slurm_cluster(args: argparse.Namespace):
    """The SlurmConfig of --slurm-config with the other Slurm options over it."""
    from .replicates import SlurmConfig

    env = None
    if args.job_env:
        env = {}
        for item in args.job_env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--job-env must be KEY=VALUE, got {item!r}")
            env[key] = value
    return SlurmConfig.of(args.slurm_config).updated(
        partition=args.partition, account=args.account, cores=args.cores, memory=args.memory,
        walltime=args.walltime, jobs=args.jobs, sbatch=args.sbatch, env=env,
        setup=args.job_setup)


def _manager_options(args: argparse.Namespace) -> dict:
    """Only the options given, so that the replicate manager's defaults apply otherwise."""
    options = {}
    backend = args.backend
    if any(getattr(args, name) is not None for name in SLURM_OPTIONS):
        if backend not in (None, "slurm"):
            raise ValueError(f"the Slurm options need --backend slurm, got --backend "
                             f"{backend}")
        backend = "slurm"
    if backend == "slurm":
        options["cluster"] = _slurm_cluster(args)
    if args.scheduler is not None:
        if backend == "loky":
            raise ValueError(f"--scheduler {args.scheduler} needs --backend dask, got "
                             f"--backend loky")
        backend = "dask"
        options["scheduler"] = args.scheduler
    if backend is not None:
        options["backend"] = backend
    if args.threads is not None:
        options["threads_per_worker"] = args.threads
    return options


def _failure_summary(ds, path: Path) -> str:
    from .replicates import failure_table

    n_failed = int(ds.attrs.get("n_failed", 0))
    total = int(ds["failed"].size)
    lines = [f"{n_failed} of {total} replicate(s) failed:"]
    try:
        table = failure_table(ds)
    except ValueError:
        table = None
    if table is not None:
        axes = [c for c in table.columns if c not in ("replicate", "seed", "error", "traceback")]
        for _, row in table.head(FAILURES_SHOWN).iterrows():
            condition = ", ".join(f"{a}={row[a]}" for a in axes) or "-"
            lines.append(f"  {condition}, replicate {row['replicate']} (seed {row['seed']}): "
                         f"{row['error']}")
        if len(table) > FAILURES_SHOWN:
            lines.append(f"  … and {len(table) - FAILURES_SHOWN} more")
    where = f" and in {ds.attrs['log_file']}" if ds.attrs.get("log_file") else ""
    lines.append(f"tracebacks: the 'failures' attribute of {path}{where}; rerun only the "
                 f"failed replicates with --retry-failed")
    return "\n".join(lines)


def _study_args(args: argparse.Namespace) -> dict:
    return dict(quick=args.quick, overrides=args.overrides, seed=args.seed,
                replicates=args.replicates, results=args.results, device=args.device)


def _run(name: str, args: argparse.Namespace) -> int:
    from . import study

    if args.dry_run:
        print(study.dry_run(name, **_study_args(args)))
        return 0
    options = _manager_options(args)
    n_jobs = args.n_jobs
    if n_jobs is None and options.get("backend") == "slurm":
        n_jobs = -1  # as many workers as the Slurm jobs hold
    result = study.run(name, n_jobs=n_jobs, cache=not args.no_cache,
                       retry_failed=args.retry_failed, progress=not args.quiet,
                       notify=lambda line: print(f"anglesim: {line}", file=sys.stderr),
                       **_study_args(args), **options)
    print(f"dataset: {result.path}")
    for path in result.figures:
        print(f"figure:  {path}")
    summary = result.summary()
    if summary is not None:
        print(summary)
    if result.n_failed:
        print(_failure_summary(result.dataset, result.path), file=sys.stderr)
        return 1
    return 0


def _status(name: str, args: argparse.Namespace) -> int:
    from . import study

    given = _study_args(args)
    print(study.status(name, **given).summary())
    saved = study.plan(name, given["quick"], given["overrides"], given["seed"],
                       given["replicates"], given["device"]).results_file(given["results"])
    if saved.is_file():
        from .claims import claims_from_dataset, claims_table
        from .io import load_dataset

        records = claims_from_dataset(load_dataset(saved))
        if records:
            print(f"declared claims in {saved}:\n{claims_table(records, 'text')}")
    return 0


def _figures(results: Path, out: Path) -> int:
    from .study import redraw

    redraw(results, out)
    return 0


def _list() -> int:
    from .study import available, load

    for name, origin in available().items():
        where = "" if origin == "built-in" else f"  [{origin}]"
        print(f"{name:24s} {load(name).question}{where}")
    return 0


def _one_line(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}"
    return " ".join(text.split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main  # imported only here: not at CLI start-up

        return bench_main(argv[1:])
    args = parse_args(argv)
    if args.command in ("quickstart", "run", "figures"):
        import matplotlib

        matplotlib.use("Agg")  # figures are files here; never open a window
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "quickstart":
            return _run("quickstart", args)
        if args.command == "run":
            return _run(args.study, args)
        if args.command == "status":
            return _status(args.study, args)
        if args.command == "figures":
            return _figures(args.results, args.out)
        if args.command == "claims":
            from .study import claims_tables

            claims_tables(args.results, args.rst)
            return 0
        if args.command == "list":
            return _list()
    except (ValueError, OSError) as err:  # FileNotFoundError, PermissionError, ...
        print(f"anglesim: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anglesim: interrupted; finished replicates are cached, run the same command "
              "again to resume", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
