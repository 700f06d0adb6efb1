"""Command line: ``anglesim quickstart | run STUDY | status STUDY | figures | list | bench``.

Studies are scripts in the repository's ``studies/`` folder (one module per study, each with a
``run(quick, replicates, **options) -> Path`` function that hands ``options`` on to
:func:`anglesim.replicates.run_study`, and a module-level replicate function, so joblib workers
can import it). The folder is found, in order, from ``$ANGLESIM_STUDIES``, the checkout that
holds this package, or ``./studies``.

Exit codes: 0 success; 1 the study finished but some replicates failed (a summary is printed);
2 bad input (a one-line error naming the problem; nothing cached is deleted); 130 interrupted
(finished replicates stay cached; rerun to resume).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

DEFAULT_RESULTS = Path("results")
DEFAULT_FIGURES = Path("figures")
FAILURES_SHOWN = 10


def studies_dir() -> Path:
    """The folder holding the study scripts (see the module docstring for the search order)."""
    candidates = []
    if os.environ.get("ANGLESIM_STUDIES"):
        candidates.append(Path(os.environ["ANGLESIM_STUDIES"]))
    candidates.append(Path(__file__).resolve().parents[1] / "studies")
    candidates.append(Path.cwd() / "studies")
    for path in candidates:
        if (path / "__init__.py").is_file():
            return path.resolve()
    raise FileNotFoundError(
        "no studies/ folder found (looked in "
        + ", ".join(str(p) for p in candidates)
        + "); run from an anglesim checkout or set ANGLESIM_STUDIES"
    )


def available_studies() -> list[str]:
    """Names of the study scripts in the studies folder."""
    return sorted(p.stem for p in studies_dir().glob("*.py") if not p.stem.startswith("_"))


def load_study(name: str):
    """Import ``studies/<name>.py`` as module ``studies.<name>`` (importable by workers too)."""
    folder = studies_dir()
    known = available_studies()
    if name not in known:
        raise ValueError(f"unknown study {name!r}; available studies: {', '.join(known)}")
    root = str(folder.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    # A `studies` package imported earlier from another folder (another checkout, a stand-in
    # folder, an unrelated package of that name) would shadow this one: drop it and its modules.
    loaded = sys.modules.get("studies")
    if loaded is not None and folder not in {
        Path(p).resolve() for p in getattr(loaded, "__path__", [])
    }:
        for key in [m for m in sys.modules if m == "studies" or m.startswith("studies.")]:
            del sys.modules[key]
        sys.path.remove(root)
        sys.path.insert(0, root)
        importlib.invalidate_caches()
    # Worker processes (loky) start fresh interpreters: tell them where `studies` lives.
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p]])
    return importlib.import_module(f"studies.{name}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _threads(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _add_study_options(p: argparse.ArgumentParser) -> None:
    """Options that decide which replicates a study has (shared by run and status)."""
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests and CI")
    p.add_argument("--replicates", type=_positive_int, default=None,
                   help="replicates per condition (default: the study's own)")
    p.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="folder for the Dataset, figure and replicate cache (default results/)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    _add_study_options(p)
    p.add_argument("--n-jobs", type=int, default=None,
                   help="parallel workers (default: the number of CPU cores available)")
    p.add_argument("--threads", type=_threads, default=None, metavar="N|auto",
                   help="torch threads per worker (default 1, so results do not depend on "
                        "--n-jobs; 'auto': cores // workers)")
    p.add_argument("--backend", choices=["loky", "dask"], default=None,
                   help="where workers run: loky processes on this machine (default) or a "
                        "dask.distributed cluster")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask scheduler address, e.g. tcp://10.0.0.5:8786 (implies --backend "
                        "dask; without it dask starts a local cluster)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute every replicate instead of reusing cached ones")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun replicates recorded as failed in the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anglesim",
        description="Fisher information of networks trained to estimate grating orientation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quickstart", help="run the quickstart study and draw its figure")
    _add_run_options(q)
    r = sub.add_parser("run", help="run one study from studies/")
    r.add_argument("study", help="study name (a script in studies/)")
    _add_run_options(r)
    s = sub.add_parser("status", help="what a study has cached, failed and still to run "
                                      "(runs nothing)")
    s.add_argument("study", help="study name (a script in studies/)")
    _add_study_options(s)
    f = sub.add_parser("figures", help="redraw every figure from saved Datasets (no training)")
    f.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="folder holding the saved Datasets (default results/)")
    f.add_argument("--out", type=Path, default=DEFAULT_FIGURES,
                   help="folder to write the figures to (default figures/)")
    sub.add_parser("list", help="list the available studies")
    # `anglesim bench …` is handed to anglesim.bench.main by main() before parsing (so that
    # this parser stays free of torch imports); listed here for --help.
    sub.add_parser("bench", add_help=False,
                   help="measure anglesim's speed as ratios against baselines and the "
                        "machine's limits (anglesim bench --help)")
    return parser


def _check_results_folder(results: Path, study: str, quick: bool) -> None:
    """Refuse, before anything runs, a results path that is a file, or a results file in the
    way that is not an anglesim Dataset (it would be overwritten)."""
    from .io import load_dataset

    if results.exists() and not results.is_dir():
        raise ValueError(f"--results {results} is a file, not a folder")
    target = results / (f"{study}_quick.nc" if quick else f"{study}.nc")
    if target.is_file():
        try:
            load_dataset(target)
        except ValueError as exc:
            raise ValueError(f"results file {target} is not an anglesim Dataset, and the run "
                             f"would overwrite it; move it away or choose another --results "
                             f"({exc})") from None


def _manager_options(args: argparse.Namespace) -> dict:
    """Only the options given, so that studies that do not know an option still run."""
    options = {}
    backend = args.backend
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


def _run(study: str, args: argparse.Namespace) -> int:
    module = load_study(study)
    if args.n_jobs == 0:
        raise ValueError("--n-jobs must not be 0")
    if args.n_jobs is None:
        import joblib

        n_jobs = joblib.cpu_count()
    else:
        n_jobs = args.n_jobs
    options = _manager_options(args)
    _check_results_folder(args.results, study, args.quick)
    path = module.run(
        quick=args.quick,
        n_jobs=n_jobs,
        replicates=args.replicates,
        seed=args.seed,
        results=args.results,
        cache=not args.no_cache,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
        **options,
    )
    from .io import load_dataset
    from .plotting import FIGURES, draw_figure, save_figure

    ds = load_dataset(path)
    print(f"dataset: {path}")
    n_failed = int(ds.attrs.get("n_failed", 0))
    if ds.attrs.get("study") in FIGURES and n_failed < ds["failed"].size:
        for fp in save_figure(draw_figure(ds), path.with_suffix("")):
            print(f"figure:  {fp}")
    summary = getattr(module, "summarise", None)
    if summary is not None and n_failed < ds["failed"].size:
        print(summary(ds))
    if n_failed:
        print(_failure_summary(ds, path), file=sys.stderr)
        return 1
    return 0


def _status(study: str, args: argparse.Namespace) -> int:
    from .replicates import inspecting

    module = load_study(study)
    with inspecting() as found:
        module.run(quick=args.quick, n_jobs=1, replicates=args.replicates, seed=args.seed,
                   results=args.results, cache=True, retry_failed=False, progress=False)
    if not found:
        raise ValueError(f"study {study!r} did not ask the replicate manager for any "
                         f"replicates, so there is nothing to report")
    for status in found:
        print(status.summary())
    return 0


def _figures(results: Path, out: Path) -> int:
    from .io import load_dataset
    from .plotting import FIGURES, draw_figure, save_figure

    paths = sorted(results.glob("*.nc"))
    if not paths:
        raise FileNotFoundError(f"no saved Datasets (*.nc) in {results}; run a study first")
    for path in paths:
        ds = load_dataset(path)
        if ds.attrs.get("study") not in FIGURES and ds.attrs.get("study") in available_studies():
            load_study(ds.attrs["study"])  # a study that registers its own figure on import
        if ds.attrs.get("study") not in FIGURES:
            print(f"skipped {path}: no figure for study {ds.attrs.get('study')!r}")
            continue
        for fp in save_figure(draw_figure(ds), out / path.stem):
            print(f"figure: {fp}")
    return 0


def _one_line(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}"
    return " ".join(text.split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
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
        if args.command == "list":
            print("\n".join(available_studies()))
            return 0
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
