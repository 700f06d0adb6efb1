"""run_study: plan the tasks, take what the cache holds, run the rest, assemble one Dataset."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import xarray as xr

from .. import io
from .. import validation as check
from ._assemble import FAILURES_ATTR, MADE_BY_ATTR, assemble, failure_entries, made_by_summary
from ._backends import run_parallel, workers_and_threads
from ._cache import CacheProblems, ReplicateCache, made_by
from ._grid import RESERVED_NAMES, StudySpec, Task
from ._log import LOG_NAME, StudyLog
from ._outcome import Outcome
from ._record import Recorder, log_summary
from ._settings import RunSettings
from ._slurm import SlurmConfig
from ._worker import TaskSettings, run_task

LOCK_POLL_SECONDS = 0.5
"""How often a run waiting for replicates another run holds looks at their locks."""

MAX_LOCKS = 256
"""At most this many replicates (or 4 × workers, if more) are locked and run per round, since
each held lock is an open file (the usual limit is 1,024 per process)."""


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
    cluster: SlurmConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
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
        backend: where tasks run when ``n_jobs != 1``, one of :data:`BACKENDS`: ``"loky"``
            processes on this machine, a ``"dask"`` cluster, or dask workers in ``"slurm"``
            jobs (``cluster``; ``n_jobs=-1`` then lets the cluster's ``jobs`` decide).
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
        cluster: with ``backend="slurm"``, the Slurm jobs to ask for: a :class:`SlurmConfig`,
            a dict of its options, or the path of a TOML file with a ``[slurm]`` table (a
            lab's shared file); None: SlurmConfig's defaults. Each replicate's job id is
            recorded (:func:`replicate_jobs`).
        coord_attrs: units and long names of the grid axes' coordinates (``{axis: {"units":
            …, "long_name": …}}``); an axis without them gets ``long_name`` "grid axis
            <name>". Known coordinates (``angle``, ``replicate``, …) are described anyway
            (:func:`anglesim.io.describe`).

    In each task torch's thread count is set to ``threads_per_worker`` and torch's global
    generator is seeded with the replicate's seed (both restored afterwards), and glibc's
    malloc is tuned once per process (:func:`configure_malloc`). So on a CPU the same study
    seed gives bit-identical results whatever ``n_jobs`` and backend (a different thread
    count changes the order of floating-point sums and hence the last bits). On a GPU,
    cuDNN's algorithm choice and atomic-add kernels are not deterministic unless
    ``torch.use_deterministic_algorithms(True)`` (with ``CUBLAS_WORKSPACE_CONFIG=:4096:8``)
    is set and ``torch.backends.cudnn.benchmark`` is off; results also differ between GPU
    models and between GPU and CPU.

    Failures of the machinery: a worker process that dies (a signal, ``os._exit``, the
    out-of-memory killer) fails only the replicate it was computing, recorded with the signal
    or exit code; a worker whose study process dies ends within a quarter of a second and
    stores nothing more; before computing, the free space is checked against the size of the
    study's cached files, and a cache file that cannot be written stops the study
    (:class:`CacheFullError`), keeping every replicate already cached.

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
        :func:`failure_table`), ``replicates_made_by`` (which code revision, CPU and backend
        computed the replicates, with counts and dates, and for Slurm the job ids of each
        replicate; more than one entry when a study was resumed after a commit or on another
        machine or backend),
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
    check.function("fn", fn)
    spec = StudySpec.checked(grid, n_replicates, seed, name, config, code_version, pair_axes)
    how = RunSettings.checked(n_jobs, backend, scheduler, threads_per_worker, progress,
                              retry_failed, cluster)
    if code_origin is not None:
        code_origin = check.text("code_origin", code_origin)
    nan_ok = frozenset(check.name_list("allow_nan", sorted(allow_nan) if isinstance(
        allow_nan, (set, frozenset)) else allow_nan))
    described = grid_coord_attrs(spec.axes, coord_attrs)
    io.check_dim_names(xr.Dataset(coords={a: list(v) for a, v in spec.axes.items()}),
                       stacklevel=2)

    cache = ReplicateCache.open(cache_dir, name) if cache_dir is not None else None
    if log_file is None and cache is not None:
        log_file = cache.folder / LOG_NAME
    log = StudyLog(Path(log_file) if log_file is not None else None)
    try:
        run = StudyRun(fn, spec, how, cache, log, nan_ok)
        outcomes = run.run()
        ds = study_dataset(outcomes, run.tasks, spec, code_origin, described)
        if log.path is not None:
            ds.attrs["log_file"] = log_path_attr(log, Path(cache_dir) if cache_dir else None)
        run.summarise(outcomes)
        return ds
    finally:
        log.close()


def grid_coord_attrs(axes: dict[str, list], given: Any) -> dict[str, dict[str, str]]:
    """Units and long names for the grid axes: ``given`` ones, else ``grid axis <name>``."""
    if given is not None and not isinstance(given, Mapping):
        raise check.fail("coord_attrs", "a dict of axis -> attributes", given)
    out = {axis: {"long_name": f"grid axis {axis}"} for axis in axes}
    for axis, attrs in (given or {}).items():
        if not isinstance(attrs, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in attrs.items()):
            raise check.fail(f"coord_attrs[{axis!r}]", "a map of attribute names to non-empty "
                             "strings", attrs)
        out[str(axis)] = {**out.get(str(axis), {}), **attrs}
    return out


class StudyRun:
    """One run of a study: take what the cache holds, compute the rest (each replicate under
    its lock, in rounds), and hand every outcome to a :class:`~._record.Recorder`."""

    def __init__(self, fn: Callable, spec: StudySpec, how: RunSettings,
                 cache: ReplicateCache | None, log: StudyLog, allow_nan: frozenset[str]):
        self.fn, self.spec, self.how, self.cache, self.log = fn, spec, how, cache, log
        self.allow_nan = allow_nan
        self.tasks = spec.tasks()
        self.record = Recorder(self.tasks, cache, log)
        self.started = time.perf_counter()
        self.run_started = self.started
        self.run_seconds = 0.0
        self.n_computed = 0
        self.workers = 1

    def run(self) -> list[Outcome]:
        """Every task's outcome, in task order."""
        from .. import __version__

        spec = self.spec
        self.log.debug("study %s: anglesim %s, seed %d, grid %s, %d replicate(s) per "
                       "condition, %d task(s), cache %s, code_version %s", spec.name,
                       __version__, spec.seed, json.dumps(spec.axes), spec.n_replicates,
                       len(self.tasks), self.cache.folder if self.cache else None,
                       spec.code_version)
        try:
            scanned = time.time()
            todo = self.scan()
            self.n_computed = len(todo)
            if todo:
                self.compute(todo, scanned)
            else:
                self.log.info("study %s: all %d replicate(s) found in the cache", spec.name,
                              len(self.tasks))
        finally:
            self.record.close()
        self.run_seconds = time.perf_counter() - self.run_started
        return self.record.all()

    def scan(self) -> list[Task]:
        """Record what the cache holds; the tasks left to compute."""
        if self.cache is None:
            return list(self.tasks)
        self.cache.remove_stale_temps(self.log)
        problems = CacheProblems()
        todo = []
        for task in self.tasks:
            stored = self.cache.load(task, problems, self.how.retry_failed)
            if stored is None:
                todo.append(task)
            else:
                self.record(stored)
        problems.report(self.log)
        return todo

    def compute(self, todo: list[Task], scanned: float) -> None:
        """Compute ``todo`` on the chosen workers, with a progress bar."""
        spec, how, counts = self.spec, self.how, self.record.progress
        if self.cache is not None:
            self.cache.check_space(len(todo))
            self.record.space_checked = self.cache.n_results() > 0
        if how.cluster is not None and how.cluster.log_directory is None \
                and self.cache is not None:  # the jobs' output beside the study's log
            how = self.how = replace(how, cluster=how.cluster.updated(
                log_directory=str(self.cache.folder / "slurm-logs")))
        self.workers, threads = workers_and_threads(how, len(todo))
        self.log.info("study %s: %d of %d replicate(s) to compute (%d cached, %d failed "
                      "earlier) on %s worker(s) (%s) with %d torch thread(s) each", spec.name,
                      len(todo), len(self.tasks), counts.cached - counts.failed, counts.failed,
                      "1" if how.in_process else self.workers, how.where(), threads)
        counts.start(spec.name, len(self.tasks), how.progress)
        self.run_started = time.perf_counter()
        # loky workers are children of this process and watch it; dask workers are the
        # cluster's (their nanny's children), and are not tied to this process
        parent = None if how.in_process or how.backend != "loky" else os.getpid()
        settings = TaskSettings(threads, frozenset(spec.axes) | frozenset(RESERVED_NAMES),
                                self.cache, self.allow_nan, parent, how.where())
        self.compute_in_rounds(todo, settings, scanned)

    def compute_in_rounds(self, todo: list[Task], settings: TaskSettings,
                          scanned: float) -> None:
        """Compute ``todo``, taking each replicate's lock first. Replicates another run holds
        are left to it: this run computes the rest, then waits for those and takes each
        result from the cache (or computes it, if that run ended without it)."""
        pending = list(todo)
        announced = False
        waited: set[int] = set()  # replicates found locked by another run
        while pending:
            mine, busy, later = self.take_locks(pending, waited, scanned)
            if busy and not announced:
                assert self.cache is not None
                self.log.warning("study %s: %d replicate(s) are being computed by another run "
                                 "on %s (%s); this run computes the others and waits for "
                                 "those", self.spec.name, len(busy), self.cache.folder,
                                 self.cache.holder(busy[0]))
                announced = True
            if mine:
                self.run_tasks(mine, settings)
            elif busy:
                time.sleep(LOCK_POLL_SECONDS)
            pending = later + busy
            waited.update(task.index for task in busy)

    def take_locks(self, pending: list[Task], waited: set[int], scanned: float
                   ) -> tuple[list[Task], list[Task], list[Task]]:
        """This round's tasks: (locked by this run, to compute; locked by another run; left
        for the next round, beyond :data:`MAX_LOCKS`). A task another run finished since the
        scan is recorded from the cache instead."""
        cache = self.cache
        if cache is None:
            return list(pending), [], []
        mine: list[Task] = []
        busy: list[Task] = []
        later: list[Task] = []
        problems = CacheProblems()
        for task in pending:
            if len(mine) >= max(MAX_LOCKS, 4 * self.workers):
                later.append(task)  # one open file per lock: take the rest next round
                continue
            lock = cache.lock(task)
            if lock is None:
                busy.append(task)
                continue
            stored = cache.load(task, problems, self.how.retry_failed) \
                if task.index in waited or cache.written_since(task, scanned) else None
            if stored is not None:  # another run finished it since the scan
                lock.release()
                self.record(stored)
                continue
            self.record.hold(task, lock)
            mine.append(task)
        problems.report(self.log)
        return mine, busy, later

    def run_tasks(self, tasks: list[Task], settings: TaskSettings) -> None:
        """Compute ``tasks`` in this process or on the backend's workers."""
        if self.how.in_process:
            for task in tasks:
                self.record(run_task(self.fn, task, settings))
            return
        run_parallel(self.fn, tasks, settings, min(self.workers, len(tasks)), self.how,
                     self.record, self.log, self.recover)

    def recover(self, task: Task) -> Outcome | None:
        """A result ``task`` stored before its outcome was lost (its worker pool broke)."""
        if self.cache is None:
            return None
        problems = CacheProblems()
        stored = self.cache.load(task, problems, retry_failed=True)
        problems.report(self.log)
        return stored

    def summarise(self, outcomes: list[Outcome]) -> None:
        """The timing summary and the number of failures, to the log."""
        log_summary(self.log, self.spec.name, outcomes, self.n_computed,
                    self.workers if not self.how.in_process else 1, self.run_seconds,
                    time.perf_counter() - self.started)
        n_failed = sum(o.failed for o in outcomes)
        if n_failed:
            self.log.warning("study %s: %d of %d replicates failed", self.spec.name, n_failed,
                             len(outcomes))


def study_dataset(outcomes: list[Outcome], tasks: list[Task], spec: StudySpec,
                  code_origin: str | None, coord_attrs: dict[str, dict[str, str]]
                  ) -> xr.Dataset:
    """The assembled Dataset with its attributes: provenance, the study's grid and size, the
    failure table and the replicates' origins."""
    ds = io.describe(assemble(outcomes, [t.seed for t in tasks], spec.axes,
                              spec.n_replicates), coord_attrs)
    failures = failure_entries(outcomes)
    prov = io.provenance(spec.config, spec.seed, spec.code_version, code_origin)
    here = made_by(prov)  # the replicates computed by this run
    origins = made_by_summary([
        (o.index, o.made_by or {**here, "backend": o.backend or "not recorded",
                                "slurm_job": o.slurm_job or ""})
        for o in outcomes if o.result is not None])
    ds.attrs = {**ds.attrs, **prov,
                "study": spec.name, "grid": json.dumps(spec.axes),
                "n_replicates": spec.n_replicates, "n_failed": len(failures),
                FAILURES_ATTR: failures, MADE_BY_ATTR: origins}
    if spec.pair_axes:
        ds.attrs["pair_axes"] = list(spec.pair_axes)
    return ds


def log_path_attr(log: StudyLog, cache_dir: Path | None) -> str:
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
