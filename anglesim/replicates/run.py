"""run_study: plan the tasks, take what the cache holds, run the rest, assemble one Dataset."""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr
from tqdm import tqdm

from .. import io
from .. import validation as check
from .assemble import FAILURES_ATTR, _assemble, _failure_entries
from .backends import BACKENDS, _run_parallel, _workers_and_threads
from .cache import (
    MADE_BY_ATTR,
    CacheFullError,
    CacheWarning,
    _check_space,
    _from_cache,
    _holder,
    _Lock,
    _made_by,
    _prepare_cache,
    _remove_stale_temps,
    _report_cache_problems,
    _store,
    _try_lock,
    made_by_summary,
)
from .grid import RESERVED_NAMES, _check_int, _plan, _Task, _validated, _validated_keys
from .log import LOG_NAME, _StudyLog
from .status import _INSPECT, StudyInspected, study_status
from .worker import _run_task, _Settings


def run_study(
    fn: Callable[[dict, int, int], xr.Dataset],
    grid: Mapping[str, Sequence],
    n_replicates: int,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str = "study",
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    threads_per_worker: int | str | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
    log_file: str | os.PathLike[str] | None = None,
    code_version: str | None = None,
    code_origin: str | None = None,
    pair_axes: Sequence[str] = (),
    allow_nan: Collection[str] = (),
    coord_attrs: Mapping[str, Mapping[str, str]] | None = None,
) -> xr.Dataset:
    """Run ``fn`` for every condition of ``grid`` × ``n_replicates`` seeds; one Dataset back.

    Args:
        fn: ``fn(condition, replicate, seed) -> xr.Dataset`` computing one replicate; it must
            be picklable (a module-level function or a functools.partial of one) when
            ``n_jobs != 1``. It must draw its randomness from ``seed``. Its result must not use
            the grid's axis names or :data:`RESERVED_NAMES` as dimension or variable names,
            and all replicates must return the same structure.
        grid: ``{axis name: values}``; conditions are their Cartesian product in the order of
            :func:`iter_conditions`.
        n_replicates: replicates per condition (>= 1).
        seed: study seed (>= 0); replicate ``r`` of condition ``c`` gets
            ``replicate_seed(seed, condition_id(c without pair_axes), r)``, whatever else is
            in the grid.
        n_jobs: 1 runs tasks one after another in this process; otherwise the number of
            workers (negative values count back from the number of cores, as in joblib; with
            ``backend="dask"`` -1 means every thread of the cluster). Never more workers than
            tasks to run are used.
        cache_dir: if given, each finished replicate is stored as
            ``cache_dir/name/<condition_key>__r<replicate>.nc`` (a failure as
            ``….failed.json``) and reused by later runs whose config, seed, condition,
            code_version and anglesim version match; anything else found there is reported
            with a :class:`CacheWarning` and in the log, and recomputed. Each replicate being
            computed is locked (``.locks/``), so a second run on the same cache computes the
            others and waits for those (saying so in one line), never computing one twice.
        name: study name; the cache subfolder; letters, digits, ``.``, ``_``, ``-``.
        config: JSON-encodable description of everything else that determines the results
            (stored in attrs, part of the cache key: change it whenever ``fn``'s behaviour
            changes, or the cache will serve old results).
        progress: show a progress bar: replicates done of all, failed, cached, and an ETA.
        retry_failed: recompute replicates whose failure is recorded in the cache.
        threads_per_worker: torch threads inside each task; default :data:`DEFAULT_THREADS`
            (1), the same whatever ``n_jobs`` so that results are too. ``"auto"`` uses
            ``max(1, cores // workers)`` with loky or in this process (joblib's count of
            cores, which honours CPU affinity and container limits; dask tasks keep 1): faster
            when there are fewer tasks than cores, but results then differ in their last bits
            between different ``n_jobs``.
        backend: joblib backend for ``n_jobs != 1``, one of :data:`BACKENDS`.
        scheduler: with ``backend="dask"``, the address of a dask.distributed scheduler
            (e.g. ``"tcp://10.0.0.5:8786"``) to connect to for this run; without it the current
            Client is used, or, if there is none, a LocalCluster of ``n_jobs`` single-threaded
            worker processes is started for this run.
        log_file: where to append this run's log (start, each replicate with its time,
            failures with tracebacks, cache problems, a summary with the manager's overhead);
            default ``cache_dir/name/study.log`` with a cache, none without.
        code_version: the version of the replicate code (e.g. a hash of the study's source);
            part of every replicate's cache key, so a cached file made with another
            code_version is recomputed, the CacheWarning and log saying "the replicate code
            changed"; stored in the Dataset's attrs. None (the default) leaves the key as it
            was without it.
        code_origin: where the replicate code comes from (a module name, a file name; no
            machine paths), stored in the Dataset's attrs.
        pair_axes: grid axes that do not enter a replicate's seed: conditions that differ
            only in these axes share their replicates' seeds (one parent, many treatments).
        allow_nan: variables of fn's result that may hold NaN or ±inf, by name or
            :mod:`fnmatch` pattern (``"val_*"``; ``["*"]`` allows them everywhere); in any
            other float or complex variable (coordinates included) a NaN or inf makes the
            replicate a failure naming the variable.
        coord_attrs: units and long names of the grid axes' coordinates (``{axis: {"units":
            …, "long_name": …}}``); an axis without them gets ``long_name`` "grid axis
            <name>". Known coordinates (``angle``, ``replicate``, …) are described anyway
            (:func:`anglesim.io.describe`).

    In each task torch's thread count is set to ``threads_per_worker`` and torch's global
    generator is seeded with the replicate's seed (both restored afterwards), and glibc's
    malloc is tuned once per process (:func:`configure_malloc`).

    Failures of the machinery: a worker process that dies (a signal, ``os._exit``, the
    out-of-memory killer) fails only the replicate it was computing, recorded with the signal
    or exit code (see :mod:`.backends`); a worker whose study process dies ends within
    :data:`~.worker.WATCHDOG_SECONDS` and stores nothing more; before computing, the free
    space is checked against the size of the study's cached files, and a cache file that
    cannot be written stops the study (:class:`CacheFullError`), keeping every replicate
    already cached.

    Inside :func:`inspecting` nothing is run: the study's :class:`StudyStatus` is recorded and
    :class:`StudyInspected` is raised.

    Returns:
        A Dataset with dims (grid axes..., ``replicate``, fn's own dims...), coordinates for
        the grid axes (their values) and ``replicate`` (0..n-1), fn's variables (a failed
        replicate holds NaN in float variables, False in bool ones, "" in string ones, NaT in
        datetime ones; integer variables become float64 with NaN when any replicate failed),
        plus ``failed`` (bool), ``error`` (str, "" if ok) and ``replicate_seed`` (int64) over
        (grid axes..., replicate). Attributes: provenance (:func:`anglesim.io.provenance`),
        ``study`` (the name), ``grid`` (JSON, axis order kept), ``n_replicates``,
        ``n_failed`` and ``failures``, the failure table (a list of records with
        ``condition``, ``replicate``, ``seed``, ``error``, ``traceback``; see
        :func:`failure_table`), ``replicates_made_by`` (which code revision and CPU computed
        the replicates, with counts and dates; more than one entry when a study was resumed
        after a commit or on another machine; see :func:`made_by_summary`),
        ``code_version``/``code_origin`` when given, and, when there
        is a log, ``log_file`` (its path relative to the folder holding ``cache_dir``, or its
        file name if it lies elsewhere: no machine paths). If no
        replicate succeeded it holds only ``failed``, ``error``
        and ``replicate_seed``.

    Raises:
        ValueError: for invalid arguments (naming the argument and value), a cache directory
            that cannot be written, or if successful replicates' Datasets do not share one
            structure.
        CacheFullError: (an OSError naming the file or folder) if the cache's disk cannot
            hold the remaining replicates' files or a cache file cannot be written.
        ModuleNotFoundError: with ``cache_dir``, if h5py (needed for netCDF4) is missing.
    """
    axes, n_replicates, seed = _validated(fn, grid, n_replicates, seed, name, config)
    code_version, pair = _validated_keys(axes, code_version, pair_axes)
    if code_origin is not None:
        code_origin = check.text("code_origin", code_origin)
    nan_ok = frozenset(check.name_list("allow_nan", sorted(allow_nan) if isinstance(
        allow_nan, (set, frozenset)) else allow_nan))
    described = _coord_attrs(axes, coord_attrs)
    n_jobs = _check_int("n_jobs", n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs must be a non-zero integer (1: in this process; negative: "
                         "counted back from the number of cores), got 0")
    if threads_per_worker is not None and threads_per_worker != "auto":
        threads_per_worker = _check_int("threads_per_worker", threads_per_worker, minimum=1)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)} (workers in separate "
                         f"processes), got {backend!r}")
    if scheduler is not None and (backend != "dask" or not isinstance(scheduler, str)
                                  or not scheduler):
        raise ValueError(f"scheduler must be a dask scheduler address used with "
                         f"backend='dask', got scheduler={scheduler!r} with backend={backend!r}")
    axes_ds = xr.Dataset(coords={a: list(v) for a, v in axes.items()})
    io.check_dim_names(axes_ds, stacklevel=2)

    inspect = _INSPECT.get()
    if inspect is not None:
        inspect.append(study_status(axes, n_replicates, seed, cache_dir, name, config,
                                    code_version=code_version, pair_axes=pair))
        raise StudyInspected(name)

    cache: Path | None = None
    if cache_dir is not None:
        io._require_backend()
        cache = _prepare_cache(cache_dir, name)
    if log_file is None and cache is not None:
        log_file = cache / LOG_NAME
    log = _StudyLog(Path(log_file) if log_file is not None else None)
    opts = _Options(fn, axes, n_replicates, seed, name, config, n_jobs, cache, progress,
                    retry_failed, threads_per_worker, backend, scheduler, code_version,
                    code_origin, pair, nan_ok, described,
                    Path(cache_dir) if cache_dir is not None else None)
    try:
        return _run_logged(opts, log)
    finally:
        log.close()


def _coord_attrs(axes: dict[str, list], given: Any) -> dict[str, dict[str, str]]:
    """Units and long names for the grid axes: ``given`` ones, else ``grid axis <name>``."""
    if given is not None and not isinstance(given, Mapping):
        raise ValueError(f"coord_attrs must be a dict of axis -> attributes, got {given!r}")
    out = {axis: {"long_name": f"grid axis {axis}"} for axis in axes}
    for axis, attrs in (given or {}).items():
        if not isinstance(attrs, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in attrs.items()):
            raise ValueError(f"coord_attrs[{axis!r}] must map attribute names to non-empty "
                             f"strings, got {attrs!r}")
        out[str(axis)] = {**out.get(str(axis), {}), **attrs}
    return out


@dataclass(frozen=True)
class _Options:
    """run_study's validated arguments, handed on as one object."""

    fn: Callable
    axes: dict[str, list]
    n_replicates: int
    seed: int
    name: str
    config: Mapping[str, Any] | None
    n_jobs: int
    cache: Path | None
    progress: bool
    retry_failed: bool
    threads_per_worker: int | str | None
    backend: str
    scheduler: str | None
    code_version: str | None = None
    code_origin: str | None = None
    pair_axes: tuple[str, ...] = ()
    allow_nan: frozenset[str] = frozenset()
    coord_attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    cache_dir: Path | None = None


LOCK_POLL_SECONDS = 0.5
"""How often a run waiting for replicates another run holds looks at their locks."""

MAX_LOCKS = 256
"""At most this many replicates (or 4 × workers, if more) are locked and run per round, since
each held lock is an open file (the usual limit is 1,024 per process)."""


def _log_path_attr(log: _StudyLog, cache_dir: Path | None) -> str:
    """The log's path relative to the results folder (the folder holding cache_dir)."""
    assert log.path is not None
    if cache_dir is not None:
        try:
            return Path(os.path.relpath(log.path.resolve(), cache_dir.resolve().parent)
                        ).as_posix()
        except ValueError:
            pass
    return log.path.name if log.path.is_absolute() or ".." in log.path.parts \
        else log.path.as_posix()


def _run_logged(opts: _Options, log: _StudyLog) -> xr.Dataset:
    from .. import __version__

    name, axes, n_replicates, cache = opts.name, opts.axes, opts.n_replicates, opts.cache
    started = time.perf_counter()
    tasks = _plan(axes, n_replicates, opts.seed, opts.config, opts.code_version,
                  opts.pair_axes)
    log.debug("study %s: anglesim %s, seed %d, grid %s, %d replicate(s) per condition, "
              "%d task(s), cache %s, code_version %s", name, __version__, opts.seed,
              json.dumps(axes), n_replicates, len(tasks), cache, opts.code_version)

    outcomes: list[dict | None] = [None] * len(tasks)
    counts = {"done": 0, "failed": 0, "cached": 0}
    bar: tqdm | None = None
    locks: dict[int, _Lock] = {}
    space = {"checked": False}

    def record(outcome: dict) -> None:
        task = tasks[outcome["index"]]
        if outcome.pop("store", False) and cache is not None:
            _store(cache, task, outcome)  # a failure the worker could not record itself
        lock = locks.pop(task.index, None)
        if lock is not None:
            lock.release()
        outcome["seed"] = task.seed
        outcomes[task.index] = outcome
        counts["done"] += 1
        counts["cached"] += bool(outcome.get("cached"))
        if "failure" in outcome:
            counts["failed"] += 1
            how = "recorded earlier as failed (retry_failed=True reruns it)" \
                if outcome.get("cached") else "failed"
            log.warning("%s %s: %s", task.describe(), how, outcome["failure"]["error"])
            log.debug("traceback of %s:\n%s", task.describe(),
                      outcome["failure"].get("traceback", ""))
        elif not outcome.get("cached"):
            log.log(logging.INFO, "%s done in %.3f s (manager %.3f s)", task.describe(),
                    outcome.get("fn_seconds", math.nan),
                    outcome.get("task_seconds", math.nan) - outcome.get("fn_seconds", math.nan),
                    console=False)
        if bar is not None:
            bar.set_postfix_str(f"done={counts['done']}, failed={counts['failed']}, "
                                f"cached={counts['cached']}", refresh=False)
            bar.update(1)
        if "cache_error" in outcome:
            if "cache_strerror" in outcome:  # an OSError: a full disk, a lost folder
                assert cache is not None
                kept = sum(1 for _ in cache.glob("*.nc"))
                raise CacheFullError(
                    outcome.get("cache_errno"), f"cannot write the replicate cache "
                    f"({outcome['cache_strerror']}); the study stops, the {kept} replicate "
                    f"file(s) cached so far are kept: free space (or fix the folder) and rerun "
                    f"to resume", outcome["cache_error_path"])
            message = (f"{task.describe()} was computed but could not be cached: "
                       f"{outcome['cache_error']}")
            log.warning("%s", message)
            warnings.warn(message, CacheWarning, stacklevel=4)
        elif cache is not None and not space["checked"] and "result" in outcome \
                and not outcome.get("cached"):
            space["checked"] = True  # the first file of this study: now its size is known
            _check_space(cache, sum(o is None for o in outcomes))

    todo: list[_Task] = []
    workers = threads = 0
    run_started = time.perf_counter()
    try:
        problems: list[tuple[str, Path, str]] = []
        scanned = time.time()
        if cache is not None:
            _remove_stale_temps(cache, log)
        for task in tasks:
            stored = (_from_cache(task, cache, opts.retry_failed, problems)
                      if cache is not None else None)
            if stored is None:
                todo.append(task)
            else:
                record(stored)
        _report_cache_problems(problems, log)

        if todo:
            if cache is not None:
                _check_space(cache, len(todo))
                space["checked"] = any(cache.glob("*.nc"))
            workers, threads = _workers_and_threads(opts.n_jobs, len(todo), opts.backend,
                                                    opts.threads_per_worker)
            log.info("study %s: %d of %d replicate(s) to compute (%d cached, %d failed "
                     "earlier) on %s worker(s) (%s) with %d torch thread(s) each", name,
                     len(todo), len(tasks), counts["cached"] - counts["failed"],
                     counts["failed"], "1" if opts.n_jobs == 1 else workers,
                     "this process" if opts.n_jobs == 1 else opts.backend, threads)
            # the bar starts after the cache scan, so its rate and ETA count computed
            # replicates only
            bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=name,
                       unit="replicate", disable=not opts.progress, dynamic_ncols=True,
                       bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| "
                                  "[{elapsed}, ETA {remaining}{postfix}]")
            bar.set_postfix_str(f"done={counts['done']}, failed={counts['failed']}, "
                                f"cached={counts['cached']}", refresh=False)
            run_started = time.perf_counter()
            # loky workers are children of this process and watch it; dask workers are the
            # cluster's (their nanny's children), and are not tied to this process
            parent = None if opts.n_jobs == 1 or opts.backend == "dask" else os.getpid()
            settings = _Settings(threads, frozenset(axes) | frozenset(RESERVED_NAMES), cache,
                                 opts.allow_nan, parent)
            _compute(opts, todo, settings, workers, record, locks, log, scanned)
        else:
            log.info("study %s: all %d replicate(s) found in the cache", name, len(tasks))
    finally:
        for lock in locks.values():
            lock.release()
        if bar is not None:
            bar.close()
    run_seconds = time.perf_counter() - run_started

    assert all(o is not None for o in outcomes)
    done = [o for o in outcomes if o is not None]
    ds = io.describe(_assemble(done, axes, n_replicates), opts.coord_attrs)
    failures = _failure_entries(done)
    prov = io.provenance(opts.config, opts.seed, opts.code_version, opts.code_origin)
    here = _made_by(prov)  # the replicates computed by this run
    origins = made_by_summary([o.get("made_by", here) for o in done if "result" in o])
    ds.attrs = {**ds.attrs, **prov,
                "study": name, "grid": json.dumps(axes), "n_replicates": n_replicates,
                "n_failed": len(failures), FAILURES_ATTR: failures,
                MADE_BY_ATTR: origins}
    if opts.pair_axes:
        ds.attrs["pair_axes"] = list(opts.pair_axes)
    if log.path is not None:
        ds.attrs["log_file"] = _log_path_attr(log, opts.cache_dir)
    _log_summary(log, name, done, len(todo), workers if opts.n_jobs != 1 else 1, run_seconds,
                 time.perf_counter() - started)
    if failures:
        log.warning("study %s: %d of %d replicates failed", name, len(failures), len(tasks))
    return ds


def _compute(opts: _Options, todo: list[_Task], settings: _Settings, workers: int,
             record: Callable[[dict], None], locks: dict[int, _Lock], log: _StudyLog,
             scanned: float) -> None:
    """Compute ``todo``, taking each replicate's lock first. Replicates another run holds are
    left to it: this run computes the rest, then waits for those and takes each result from
    the cache (or computes it, if that run ended without it)."""
    cache = opts.cache
    pending = list(todo)
    announced = False
    waited: set[int] = set()  # replicates found locked by another run
    while pending:
        mine: list[_Task] = []
        busy: list[_Task] = []
        problems: list[tuple[str, Path, str]] = []
        later: list[_Task] = []
        for task in pending:
            if cache is None:
                mine.append(task)
                continue
            if len(mine) >= max(MAX_LOCKS, 4 * workers):
                later.append(task)  # one open file per lock: take the rest next round
                continue
            lock = _try_lock(cache, task)
            if lock is None:
                busy.append(task)
                continue
            stored = _from_cache(task, cache, opts.retry_failed, problems) \
                if task.index in waited or _written_since(cache, task, scanned) else None
            if stored is not None:  # another run finished it since the scan
                lock.release()
                record(stored)
                continue
            locks[task.index] = lock
            mine.append(task)
        _report_cache_problems(problems, log)
        if busy and not announced:
            assert cache is not None
            log.warning("study %s: %d replicate(s) are being computed by another run on %s "
                        "(%s); this run computes the others and waits for those",
                        opts.name, len(busy), cache, _holder(cache, busy[0]))
            announced = True
        if mine:
            _run_tasks(opts, mine, settings, workers, record, log)
        elif busy:
            time.sleep(LOCK_POLL_SECONDS)
        pending = later + busy
        waited.update(task.index for task in busy)


def _written_since(cache: Path, task: _Task, since: float) -> bool:
    """Whether ``task``'s result or failure file was written after ``since`` (time.time())."""
    for suffix in (".nc", ".failed.json"):
        try:
            if (cache / f"{task.stem}{suffix}").stat().st_mtime >= since - 1.0:
                return True
        except OSError:
            pass
    return False


def _run_tasks(opts: _Options, tasks: list[_Task], settings: _Settings, workers: int,
               record: Callable[[dict], None], log: _StudyLog) -> None:
    if opts.n_jobs == 1:
        for task in tasks:
            record(_run_task(opts.fn, task, settings))
        return
    cache = opts.cache

    def recover(task: _Task) -> dict | None:
        if cache is None:
            return None
        problems: list[tuple[str, Path, str]] = []
        stored = _from_cache(task, cache, True, problems)
        _report_cache_problems(problems, log)
        return stored

    _run_parallel(opts.fn, tasks, settings, min(workers, len(tasks)), opts.backend,
                  opts.scheduler, record, log, recover)


def _log_summary(log: _StudyLog, name: str, outcomes: list[dict], n_run: int, workers: int,
                 run_seconds: float, total_seconds: float) -> None:
    """The study's timing, including the manager's own time per computed replicate:
    in-task (thread/seed settings, result checks, writing the cache file) and overall
    (wall time × workers − time inside fn, over the replicates computed)."""
    computed = [o for o in outcomes if "fn_seconds" in o]
    if not computed:
        log.debug("study %s finished in %.2f s, nothing computed", name, total_seconds)
        return
    fn_total = sum(o["fn_seconds"] for o in computed)
    in_task = sum(o["task_seconds"] - o["fn_seconds"] for o in computed) / len(computed)
    overall = (run_seconds * workers - fn_total) / len(computed)
    log.log(logging.INFO, "study %s: computed %d replicate(s) in %.2f s on %d worker(s); fn "
            "took %.3f s per replicate on average; manager time per replicate: %.4f s inside "
            "the task, %.4f s overall (wall × workers − fn time, including worker start-up "
            "and idle workers); %.2f s in all", name, n_run, run_seconds, workers,
            fn_total / len(computed), in_task, overall, total_seconds, console=False)

