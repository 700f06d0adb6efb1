"""The runner: plan once, run the replicates, save, draw the figure; status, dry runs, redraws.

The cache key of every replicate (the config handed to :func:`anglesim.replicates.run_study`)
holds the resolved configuration, the overrides given, the anglesim version and a hash of the
study's code, so that an edit to a replicate function recomputes instead of serving old
results.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import validation as check
from ._context import ReplicateContext
from ._declaration import Study
from ._finder import USER_MODULE_PREFIX, available, load
from ._plan import Plan, plan

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["RUN_PARAMETERS", "RunResult", "by_value_call", "draw_figure", "dry_run", "redraw",
           "replicate_task", "run", "status", "task_function"]

log = logging.getLogger("anglesim.study")

def _workers(name: str, value: Any) -> int:
    """A number of workers: a non-zero integer (negative counts back from the cores)."""
    if check.integer(name, value) == 0:
        raise check.fail(name, "a non-zero integer", value)
    return int(value)


RUN_PARAMETERS: dict[str, check.Constraint] = {
    "n_jobs": check.Optional(check.Check(_workers, "a non-zero integer")),
    "cache": check.Boolean(),
    "retry_failed": check.Boolean(),
    "progress": check.Boolean(),
    "draw": check.Boolean(),
    "notify": check.Optional(check.Function()),
}
"""The constraints on :func:`run`'s own parameters (the command line checks ``--n-jobs`` with
them too)."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run` made.

    Attributes:
        plan: the run's :class:`~anglesim.study.Plan`.
        dataset: the Dataset saved (after the study's ``postprocess``).
        path: the file it was saved to.
        figures: the figure files drawn from it (none when the study has no figure or every
            replicate failed).
    """

    plan: Plan
    dataset: xr.Dataset
    path: Path
    figures: tuple[Path, ...]

    @property
    def claims(self) -> list:
        """The evaluated claims (:class:`anglesim.claims.ClaimRecord`), stored with the
        Dataset; empty when the study declares none."""
        from ..claims import claims_from_dataset

        return claims_from_dataset(self.dataset)

    @property
    def n_failed(self) -> int:
        """Replicates that failed (their tracebacks are in the Dataset's ``failures``)."""
        return int(self.dataset.attrs.get("n_failed", 0))

    @property
    def any_succeeded(self) -> bool:
        """Whether at least one replicate succeeded (else there is nothing to draw)."""
        return self.n_failed < int(self.dataset["failed"].size)

    def summary(self) -> str | None:
        """The study's summary of the Dataset, then its claims table (None without either,
        or if every replicate failed)."""
        if not self.any_succeeded:
            return None
        parts = []
        if self.plan.study.summary is not None:
            parts.append(self.plan.study.summary(self.dataset))
        if self.plan.study.claims:
            from ..claims import claims_table

            parts.append("declared claims:\n" + claims_table(self.claims, "text"))
        return "\n".join(parts) if parts else None


# ---- the replicate task -----------------------------------------------------------------------


def replicate_task(replicate: Callable[[ReplicateContext], xr.Dataset],
                   params: Mapping[str, Any], angles: Any, condition: dict, index: int,
                   seed: int) -> xr.Dataset:
    """``replicate(ctx)`` for one cell: the ``fn(condition, replicate, seed)`` the replicate
    manager calls (with the study's function, configuration and angles bound)."""
    ctx = ReplicateContext(condition, index, seed, copy.deepcopy(dict(params)), angles)
    return replicate(ctx)


def task_function(p: Plan) -> Callable[[dict, int, int], xr.Dataset]:
    """The picklable ``fn(condition, replicate, seed)`` that the replicate manager calls.

    A study loaded from a file is not importable by name in a worker process, so its task
    travels as cloudpickle bytes (its module's functions pickled by value) inside a call to
    :func:`by_value_call`, which any pickler (loky's cloudpickle, dask's plain pickle first)
    sends by reference."""
    task = functools.partial(replicate_task, p.study.replicate, p.params, p.study.angles)
    if p.study.module.startswith(USER_MODULE_PREFIX):
        import cloudpickle

        return functools.partial(by_value_call, cloudpickle.dumps(task))
    return task


@functools.lru_cache(maxsize=8)
def _unpickled(payload: bytes) -> Callable[..., xr.Dataset]:
    import cloudpickle

    return cloudpickle.loads(payload)


def by_value_call(payload: bytes, condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """Run the task pickled in ``payload`` (see :func:`task_function`)."""
    return _unpickled(payload)(condition, replicate, seed)


# ---- running ----------------------------------------------------------------------------------


def _code_record(p: Plan, cache_dir: Path) -> Path:
    return cache_dir / f"{p.cache_name}.code.json"


def _code_note(p: Plan, cache_dir: Path) -> str | None:
    """A line saying so if the study's code changed since its cache was written."""
    record = _code_record(p, cache_dir)
    now = p.config["code"]
    if not record.is_file():
        return None
    try:
        before = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(before, dict) or before == now:
        return None
    changed = [k for k in now if before.get(k) != now[k]]
    return (f"study {p.study.name}: its " + " and ".join(
        "code" if k == "study" else f"{k} version" for k in changed if k != "origin")
        + f" changed since the cache was written ({before.get('study')} → {now['study']}); "
        f"its replicates are recomputed")


def _check_results_file(results: Path, target: Path) -> None:
    """Refuse, before anything runs, a results path that is a file, or a results file in the
    way that is not an anglesim Dataset (it would be overwritten)."""
    from ..io import load_dataset

    if results.exists() and not results.is_dir():
        raise ValueError(f"results {results} is a file, not a folder")
    if target.is_file():
        try:
            load_dataset(target)
        except ValueError as exc:
            raise ValueError(f"results file {target} is not an anglesim Dataset, and the run "
                             f"would overwrite it; move it away or choose another results "
                             f"folder ({exc})") from None


def run(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
        seed: int = 0, replicates: int | None = None, results: str | os.PathLike = "results",
        n_jobs: int | None = 1, cache: bool = True, retry_failed: bool = False,
        progress: bool = True, device: Any = None, draw: bool = True,
        notify: Callable[[str], None] | None = None, **manager: Any) -> RunResult:
    """Run a study's grid × replicates, save its Dataset and draw its figure; plan once.

    Saves ``results/<name>[_quick].nc`` (attrs ``study`` and ``config``) after the study's
    ``postprocess``, and its figure beside it (``.png``, ``.pdf``; unless ``draw=False``, or
    every replicate failed), drawn from the Dataset in memory. Replicates are cached under
    ``results/cache/<name>-<size>/`` unless ``cache=False``. ``n_jobs``: workers (None: every
    core). ``notify`` gets one line when the study's code changed since its cache was written
    (default: the log). Extra keyword arguments (``backend``, ``scheduler``,
    ``threads_per_worker``) go to :func:`anglesim.replicates.run_study`.

    Returns:
        A :class:`RunResult`: the Dataset, its path and the figure files.

    Raises:
        ValueError: bad input (an unknown study or key, a bad value, a results file in the way
            that is not an anglesim Dataset), before anything runs.
    """
    from ..io import save_dataset, write_text_atomic
    from ..replicates import run_study

    options = check.validate({"n_jobs": n_jobs, "cache": cache, "retry_failed": retry_failed,
                              "progress": progress, "draw": draw, "notify": notify},
                             RUN_PARAMETERS)
    p = plan(study, quick, overrides, seed, replicates, device)
    results = Path(results)
    target = p.results_file(results)
    _check_results_file(results, target)
    cache_dir = results / "cache" if options["cache"] else None
    if cache_dir is not None:
        note = _code_note(p, cache_dir)
        if note:
            (notify or log.warning)(note)
    n_jobs = options["n_jobs"]
    if n_jobs is None:
        import joblib

        n_jobs = joblib.cpu_count()
    n_tasks = p.n_replicates * max(1, p.n_conditions)
    ds = run_study(task_function(p), p.grid, n_replicates=p.n_replicates, seed=p.seed,
                   n_jobs=min(n_jobs, n_tasks) if n_jobs > 0 else n_jobs,
                   cache_dir=cache_dir, name=p.cache_name, config=p.config,
                   progress=progress, retry_failed=retry_failed,
                   code_version=p.config["code"]["study"],
                   code_origin=p.config["code"]["origin"], pair_axes=p.study.pair_axes,
                   allow_nan=p.study.allow_nan, **manager)
    if cache_dir is not None:  # the code version the cache now holds, for the next run
        write_text_atomic(_code_record(p, cache_dir), json.dumps(p.config["code"]))
    if p.study.postprocess is not None and not bool(ds["failed"].all()):
        ds = p.study.postprocess(ds)  # when every replicate failed there is nothing to derive
    ds.attrs["study"] = p.study.name
    ds, claims_error = with_claims(p.study, ds)
    path = save_dataset(ds, target, config=p.config, seed=p.seed)
    if claims_error is not None:  # the replicates are saved; the declaration needs mending
        raise RuntimeError(f"study {p.study.name}: its declared claims could not be "
                           f"evaluated ({claims_error}); the Dataset is saved without them at "
                           f"{path}") from claims_error
    figures: tuple[Path, ...] = ()
    if draw and p.study.figure is not None and not bool(ds["failed"].all()):
        from ..plotting import save_figure

        figures = tuple(save_figure(p.study.figure(ds), path.with_suffix("")))
    return RunResult(p, ds, path, figures)


def with_claims(study: Study, ds: xr.Dataset) -> tuple[xr.Dataset, Exception | None]:
    """``ds`` with the study's declared claims evaluated and stored (attribute ``claims``),
    and the error if they could not be (then ``ds`` unchanged).

    A cell a claim names that the run lacks (a quick size, a grid override) gives an
    unresolved record saying so; a failed evaluation does not lose the run's Dataset.
    """
    if not study.claims or bool(ds["failed"].all()):
        return ds, None
    from ..claims import claims_to_attrs, evaluate_claims

    try:
        records = evaluate_claims(ds, study.claims, missing="unresolved")
    except Exception as exc:  # noqa: BLE001 - reported after the Dataset is saved
        return ds, exc
    ds = ds.copy()
    ds.attrs.update(claims_to_attrs(records))
    return ds, None


def status(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
           seed: int = 0, replicates: int | None = None,
           results: str | os.PathLike = "results", device: Any = None):
    """The :class:`anglesim.replicates.StudyStatus` of a study's cache; runs nothing."""
    return _status(plan(study, quick, overrides, seed, replicates, device), Path(results))


def _status(p: Plan, results: Path):
    from ..replicates import study_status

    return study_status(p.grid, p.n_replicates, seed=p.seed, cache_dir=results / "cache",
                        name=p.cache_name, config=p.config,
                        code_version=p.config["code"]["study"], pair_axes=p.study.pair_axes)


def dry_run(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
            seed: int = 0, replicates: int | None = None,
            results: str | os.PathLike = "results", device: Any = None) -> str:
    """Lines for people: the run's configuration changes, then every cell (condition ×
    replicate) with its seed and whether it is cached, failed or to run."""
    from ..replicates import condition_id, iter_conditions, replicate_seed

    p = plan(study, quick, overrides, seed, replicates, device)
    found = _status(p, Path(results))
    cached = {(json.dumps(c, sort_keys=True, default=str), r) for c, r in found.cached}
    failed = {(json.dumps(f["condition"], sort_keys=True, default=str), f["replicate"])
              for f in found.failed}
    lines = [f"study {p.study.name} ({p.size}): {p.n_conditions} condition(s) × "
             f"{p.n_replicates} replicate(s); {len(found.cached)} cached, "
             f"{len(found.failed)} failed, {len(found.missing)} to run"]
    if p.overrides:
        lines.append("overrides: " + ", ".join(f"{k}={json.dumps(v)}"
                                               for k, v in p.overrides.items()))
    if p.study.pair_axes:
        lines.append(f"conditions along {', '.join(p.study.pair_axes)} share replicate seeds")
    for condition in iter_conditions(p.grid):
        key = json.dumps(condition, sort_keys=True, default=str)
        shared = {k: v for k, v in condition.items() if k not in p.study.pair_axes}
        label = ", ".join(f"{k}={v}" for k, v in condition.items()) or "-"
        for r in range(p.n_replicates):
            s = replicate_seed(p.seed, condition_id(shared if p.study.pair_axes else condition),
                               r)
            state = ("cached" if (key, r) in cached else
                     "failed" if (key, r) in failed else "to run")
            lines.append(f"  {label}, replicate {r} (seed {s}): {state}")
    return "\n".join(lines)


# ---- figures ----------------------------------------------------------------------------------


def draw_figure(ds: xr.Dataset):
    """Draw a Dataset's figure, chosen by its ``study`` attribute (built-in and user
    studies). Raises ValueError for a study without a figure."""
    name = ds.attrs.get("study")
    try:
        study = load(str(name))
    except ValueError:
        raise ValueError(f"no study {name!r} to draw this Dataset; known studies: "
                         f"{', '.join(available())}") from None
    if study.figure is None:
        raise ValueError(f"study {name!r} declares no figure")
    return study.figure(ds)


def redraw(results: str | os.PathLike, out: str | os.PathLike,
           echo: Callable[[str], None] = print) -> list[Path]:
    """Redraw the figure of every saved Dataset ``results/*.nc`` into ``out``; no training.

    Datasets of unknown studies or studies without a figure are skipped with a line.
    Returns the files written.
    """
    from ..io import load_dataset
    from ..plotting import save_figure

    paths = sorted(Path(results).glob("*.nc"))
    if not paths:
        raise FileNotFoundError(f"no saved Datasets (*.nc) in {results}; run a study first")
    known = available()
    written: list[Path] = []
    for path in paths:
        ds = load_dataset(path)
        name = ds.attrs.get("study")
        if name not in known or load(name).figure is None:
            echo(f"skipped {path}: no figure for study {name!r}")
            continue
        for fp in save_figure(draw_figure(ds), Path(out) / path.stem):
            echo(f"figure: {fp}")
            written.append(fp)
    return written


def claims_tables(results: str | os.PathLike, rst: str | os.PathLike | None = None,
                  echo: Callable[[str], None] = print) -> list[Path]:
    """The claims stored with every saved Dataset ``results/*.nc``: printed as text, and with
    ``rst`` written as ``rst/<file stem>.rst`` (the results page includes them); no
    evaluation, only what each file holds. Returns the RST files written.
    """
    from ..claims import claims_from_dataset, claims_table
    from ..io import load_dataset

    paths = sorted(Path(results).glob("*.nc"))
    if not paths:
        raise FileNotFoundError(f"no saved Datasets (*.nc) in {results}; run a study first")
    written: list[Path] = []
    for path in paths:
        records = claims_from_dataset(load_dataset(path))
        if not records:
            echo(f"{path}: no declared claims")
            continue
        echo(f"{path}:\n{claims_table(records, 'text')}")
        if rst is not None:
            out = Path(rst) / f"{path.stem}.rst"
            out.parent.mkdir(parents=True, exist_ok=True)
            from ..io import write_text_atomic

            write_text_atomic(out, claims_table(records, "rst") + "\n")
            written.append(out)
    return written
