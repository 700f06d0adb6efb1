"""Command line: ``anglesim quickstart | run STUDY | figures``.

Studies are scripts in the repository's ``studies/`` folder (one module per study, each with a
``run(args) -> Path`` function and a module-level replicate function, so joblib workers can
import it). The folder is found, in order, from ``$ANGLESIM_STUDIES``, the checkout that holds
this package, or ``./studies``.
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


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests and CI")
    p.add_argument("--n-jobs", type=int, default=None,
                   help="parallel workers (default: the number of CPU cores)")
    p.add_argument("--replicates", type=_positive_int, default=None,
                   help="replicates per condition (default: the study's own)")
    p.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="folder for the Dataset, figure and replicate cache (default results/)")
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
    f = sub.add_parser("figures", help="redraw every figure from saved Datasets (no training)")
    f.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="folder holding the saved Datasets (default results/)")
    f.add_argument("--out", type=Path, default=DEFAULT_FIGURES,
                   help="folder to write the figures to (default figures/)")
    sub.add_parser("list", help="list the available studies")
    return parser


def _run(study: str, args: argparse.Namespace) -> int:
    module = load_study(study)
    n_jobs = args.n_jobs if args.n_jobs is not None else (os.cpu_count() or 1)
    if n_jobs == 0:
        raise ValueError("--n-jobs must not be 0")
    path = module.run(
        quick=args.quick,
        n_jobs=n_jobs,
        replicates=args.replicates,
        seed=args.seed,
        results=args.results,
        cache=not args.no_cache,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
    )
    from .io import load_dataset
    from .plotting import draw_figure, save_figure

    ds = load_dataset(path)
    figure_paths = save_figure(draw_figure(ds), path.with_suffix(""))
    print(f"dataset: {path}")
    for fp in figure_paths:
        print(f"figure:  {fp}")
    summary = getattr(module, "summarise", None)
    if summary is not None:
        print(summary(ds))
    n_failed = int(ds.attrs.get("n_failed", 0))
    if n_failed:
        print(f"{n_failed} replicate(s) failed; see the 'error' variable in {path}",
              file=sys.stderr)
        return 1
    return 0


def _figures(results: Path, out: Path) -> int:
    from .io import load_dataset
    from .plotting import FIGURES, draw_figure, save_figure

    paths = sorted(results.glob("*.nc"))
    if not paths:
        raise FileNotFoundError(f"no saved Datasets (*.nc) in {results}; run a study first")
    for path in paths:
        ds = load_dataset(path)
        if ds.attrs.get("study") not in FIGURES:
            print(f"skipped {path}: no figure for study {ds.attrs.get('study')!r}")
            continue
        for fp in save_figure(draw_figure(ds), out / path.stem):
            print(f"figure: {fp}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "quickstart":
            return _run("quickstart", args)
        if args.command == "run":
            return _run(args.study, args)
        if args.command == "figures":
            return _figures(args.results, args.out)
        if args.command == "list":
            print("\n".join(available_studies()))
            return 0
    except (ValueError, FileNotFoundError) as err:
        print(f"anglesim: error: {err}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
