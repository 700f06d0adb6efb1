"""run_study: plan the tasks, take what the cache holds, run the rest, assemble one Dataset."""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr
from tqdm import tqdm

from .. import io
from .assemble import FAILURES_ATTR, _assemble, _failure_entries
from .backends import BACKENDS, _run_parallel, _workers_and_threads
from .cache import (
    CacheWarning,
    _failure_record,
    _from_cache,
    _prepare_cache,
    _remove_stale_temps,
    _report_cache_problems,
)
from .grid import RESERVED_NAMES, _check_int, _plan, _Task, _validated
from .log import LOG_NAME, _StudyLog
from .status import _INSPECT, StudyInspected, study_status
from .worker import _run_task


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
            ``replicate_seed(seed, condition_id(c), r)``, whatever else is in the grid.
        n_jobs: 1 runs tasks one after another in this process; otherwise the number of
            workers (negative values count back from the number of cores, as in joblib; with
            ``backend="dask"`` -1 means every thread of the cluster). Never more workers than
            tasks to run are used.
        cache_dir: if given, each finished replicate is stored as
            ``cache_dir/name/<condition_key>__r<replicate>.nc`` (a failure as
            ``….failed.json``) and reused by later runs whose config, seed, condition and
            anglesim version match; anything else found there is reported with a
            :class:`CacheWarning` and in the log, and recomputed.
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

    In each task torch's thread count is set to ``threads_per_worker`` and torch's global
    generator is seeded with the replicate's seed (both restored afterwards), and glibc's
    malloc is tuned once per process (:func:`configure_malloc`).

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
        :func:`failure_table`) and, when there is a log, ``log_file`` (its path). If no
        replicate succeeded it holds only ``failed``, ``error``
        and ``replicate_seed``.

    Raises:
        ValueError: for invalid arguments (naming the argument and value), a cache directory
            that cannot be written, or if successful replicates' Datasets do not share one
            structure.
        ModuleNotFoundError: with ``cache_dir``, if h5py (needed for netCDF4) is missing.
    """
    axes, n_replicates, seed = _validated(fn, grid, n_replicates, seed, name, config)
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

    inspect = _INSPECT.get()
    if inspect is not None:
        inspect.append(study_status(axes, n_replicates, seed, cache_dir, name, config))
        raise StudyInspected(name)

    cache: Path | None = None
    if cache_dir is not None:
        io._require_backend()
        cache = _prepare_cache(cache_dir, name)
    if log_file is None and cache is not None:
        log_file = cache / LOG_NAME
    log = _StudyLog(Path(log_file) if log_file is not None else None)
    try:
        return _run_logged(_Options(fn, axes, n_replicates, seed, name, config, n_jobs, cache,
                                    progress, retry_failed, threads_per_worker, backend,
                                    scheduler), log)
    finally:
        log.close()


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


def _run_logged(opts: _Options, log: _StudyLog) -> xr.Dataset:
    from .. import __version__

    fn, axes, n_replicates, seed, name = opts.fn, opts.axes, opts.n_replicates, opts.seed, \
        opts.name
    config, n_jobs, cache, progress = opts.config, opts.n_jobs, opts.cache, opts.progress

    started = time.perf_counter()
    tasks = _plan(axes, n_replicates, seed, config)
    forbidden = set(axes) | set(RESERVED_NAMES)
    log.debug("study %s: anglesim %s, seed %d, grid %s, %d replicate(s) per condition, "
              "%d task(s), cache %s", name, __version__, seed, json.dumps(axes), n_replicates,
              len(tasks), cache)

    outcomes: list[dict | None] = [None] * len(tasks)
    counts = {"done": 0, "failed": 0, "cached": 0}
    bar: tqdm | None = None

    def record(outcome: dict) -> None:
        task = tasks[outcome["index"]]
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
        if "cache_error" in outcome:
            message = (f"{task.describe()} was computed but could not be cached: "
                       f"{outcome['cache_error']}")
            log.warning("%s", message)
            warnings.warn(message, CacheWarning, stacklevel=4)
        if bar is not None:
            bar.set_postfix_str(f"done={counts['done']}, failed={counts['failed']}, "
                                f"cached={counts['cached']}", refresh=False)
            bar.update(1)

    todo: list[_Task] = []
    workers = threads = 0
    pool_error: str | None = None
    run_started = time.perf_counter()
    try:
        if cache is not None:
            _remove_stale_temps(cache, log)
        problems: list[tuple[str, Path, str]] = []
        for task in tasks:
            stored = (_from_cache(task, cache, opts.retry_failed, problems) if cache is not None
                      else None)
            if stored is None:
                todo.append(task)
            else:
                record(stored)
        _report_cache_problems(problems, log)

        if todo:
            workers, threads = _workers_and_threads(n_jobs, len(todo), opts.backend,
                                                    opts.threads_per_worker)
            log.info("study %s: %d of %d replicate(s) to compute (%d cached, %d failed "
                     "earlier) on %s worker(s) (%s) with %d torch thread(s) each", name,
                     len(todo), len(tasks), counts["cached"] - counts["failed"],
                     counts["failed"], "1" if n_jobs == 1 else workers,
                     "this process" if n_jobs == 1 else opts.backend, threads)
            # the bar starts after the cache scan, so its rate and ETA count computed
            # replicates only
            bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=name,
                       unit="replicate", disable=not progress, dynamic_ncols=True,
                       bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| "
                                  "[{elapsed}, ETA {remaining}{postfix}]")
            bar.set_postfix_str(f"done={counts['done']}, failed={counts['failed']}, "
                                f"cached={counts['cached']}", refresh=False)
            run_started = time.perf_counter()
            if n_jobs == 1:
                for task in todo:
                    record(_run_task(fn, task, threads, forbidden, cache))
            else:
                pool_error = _run_parallel(fn, todo, threads, forbidden, cache, workers,
                                           opts.backend, opts.scheduler, record, log)
                for task in todo:
                    if outcomes[task.index] is None:  # the worker pool broke down
                        record({"index": task.index, "failure": _failure_record(
                            task, f"not run: the worker pool stopped before this replicate "
                            f"finished ({pool_error})", "")})
        else:
            log.info("study %s: all %d replicate(s) found in the cache", name, len(tasks))
    finally:
        if bar is not None:
            bar.close()
    run_seconds = time.perf_counter() - run_started

    assert all(o is not None for o in outcomes)
    done = [o for o in outcomes if o is not None]
    ds = _assemble(done, axes, n_replicates)
    failures = _failure_entries(done)
    ds.attrs = {**ds.attrs, **io.provenance(config, seed), "study": name,
                "grid": json.dumps(axes), "n_replicates": n_replicates,
                "n_failed": len(failures), FAILURES_ATTR: failures}
    if log.path is not None:
        ds.attrs["log_file"] = str(log.path)
    _log_summary(log, name, done, len(todo), workers if n_jobs != 1 else 1, run_seconds,
                 time.perf_counter() - started)
    if failures:
        log.warning("study %s: %d of %d replicates failed", name, len(failures), len(tasks))
    return ds


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

