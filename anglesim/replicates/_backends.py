"""Backends: running tasks in loky or dask.distributed worker processes."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import joblib
from joblib.externals import loky

from ._grid import Task
from ._log import StudyLog
from ._outcome import Failure, Outcome
from ._settings import DEFAULT_THREADS, RunSettings
from ._slurm import THREAD_ENV, slurm_client
from ._worker import TaskSettings, init_worker, run_task

IDLE_WORKER_SECONDS = 300
"""loky workers left idle this long exit (joblib's own default); until then later studies in
the same process reuse them, with torch already imported."""

DASK_CONNECT_TIMEOUT = 30.0
"""Seconds to wait for a dask scheduler given by address before giving up."""


def workers_and_threads(how: RunSettings, n_todo: int) -> tuple[int, int]:
    """The number of workers (never more than tasks to run) and torch threads per task."""
    n_jobs, backend, threads_per_worker = how.n_jobs, how.backend, how.threads_per_worker
    if threads_per_worker is None:
        threads = DEFAULT_THREADS
    elif threads_per_worker != "auto":
        threads = int(threads_per_worker)
    elif backend == "slurm" and how.cluster is not None and n_jobs != 1:
        threads = how.cluster.cores  # one worker per job, holding all its cores
    else:
        threads = 0  # decided below, from the number of workers
    if n_jobs == 1:
        workers = 1
    elif backend in ("dask", "slurm"):
        workers = n_todo if n_jobs < 0 else min(n_jobs, n_todo)
        if backend == "slurm" and how.cluster is not None:
            workers = min(workers, how.cluster.jobs * how.cluster.workers_per_job(threads))
    else:
        workers = min(joblib.effective_n_jobs(n_jobs), n_todo)
    if threads == 0:
        threads = max(1, joblib.cpu_count() // workers) if backend == "loky" or n_jobs == 1 \
            else DEFAULT_THREADS
    return workers, threads


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int, log: StudyLog) -> Iterator[Any]:
    """The dask Client to run on: one connected to ``scheduler``, else the current one, else
    one on a LocalCluster of ``workers`` single-threaded processes (closed afterwards)."""
    try:
        import distributed
    except ImportError as exc:
        raise ValueError("backend 'dask' needs dask.distributed: pip install "
                         "'anglesim[distributed]'") from exc
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, set_as_default=False,
                                        timeout=DASK_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot connect to the dask scheduler {scheduler!r}: "
                             f"{exc}") from None
        log.info("connected to the dask scheduler at %s", scheduler)
        with client:
            yield client
        return
    try:
        client = distributed.get_client()
    except ValueError:
        client = None
    if client is not None:
        yield client
        return
    log.info("starting a dask LocalCluster of %d single-threaded worker process(es)", workers)
    # dask runs tasks in a worker thread, and glibc gives threads their own malloc arenas,
    # whose heaps cannot hold blocks over 64 MiB: configure_malloc cannot keep the Fisher
    # step's large temporaries then, and every one is mapped and page-faulted anew (the
    # quickstart's replicates took 40% longer than in loky workers). One arena per process,
    # set before the workers start, avoids it.
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": 1}), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


Record = Callable[[Outcome], None]
Recover = Callable[[Task], Outcome | None]


def died(task: Task, exc: BaseException, note: str = "") -> Outcome:
    """The outcome of a task whose worker process died under it (recorded in the cache by
    the manager, since the worker could not)."""
    found = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
    how = "died"
    if found:
        code = found.group(1)
        signal_name = re.fullmatch(r"(SIG\w+)\((-?\d+)\)", code)
        exit_code = re.fullmatch(r"EXIT\((-?\d+)\)", code)
        if signal_name:
            how = f"was killed by signal {signal_name.group(1)} ({signal_name.group(2)})"
        elif exit_code:
            how = f"exited with code {exit_code.group(1)}"
        else:
            how = f"died ({code})"
    text = f"WorkerDied: the worker process computing this replicate {how}{note}"
    return Outcome(task.index, failure=Failure.of(task, text, str(exc)), unstored=True)


def run_parallel(fn: Callable, todo: list[Task], settings: TaskSettings, workers: int,
                 how: RunSettings, record: Record, log: StudyLog, recover: Recover) -> None:
    """Run tasks in worker processes, recording each outcome as it arrives.

    Every task is its own future. With loky, a worker that dies (a segfault, ``os._exit``, the
    out-of-memory killer) breaks the whole pool: the outcomes that arrived are kept, and the
    unfinished tasks are rerun one per fresh single-worker process (``workers`` at a time), so
    the task that kills its worker is identified and recorded as failed with the signal or exit
    code, and every other one completes. Before a rerun ``recover(task)`` looks for a result the
    task stored before its outcome was lost. With dask, the scheduler retries a task whose
    worker died and finally fails that task alone (``KilledWorker``), which is recorded the
    same way. An exception raised by ``record`` (the cache is full) stops the run: tasks not
    yet started are cancelled and the exception propagates.
    """
    if how.backend == "dask":
        with dask_client(how.scheduler, workers, log) as client:
            _run_on_dask(client, fn, todo, settings, record, log)
        return
    if how.backend == "slurm":
        assert how.cluster is not None
        with slurm_client(how.cluster, settings.threads, workers, log) as client:
            _run_on_dask(client, fn, todo, settings, record, log)
        return
    with warnings.catch_warnings():
        # loky replaces a worker whose memory grew by more than 300 MB between two tasks (a
        # reference-MLP replicate does) and says so with a warning that blames "a too short
        # worker timeout or a memory leak" (joblib issue #869). The replacement is deliberate
        # and loses nothing; a worker that dies mid-task is handled below.
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given",
                                category=UserWarning)
        _run_loky(fn, todo, settings, workers, record, log, recover)


def _run_loky(fn: Callable, todo: list[Task], settings: TaskSettings, workers: int,
              record: Record, log: StudyLog, recover: Recover) -> None:
    env = {name: str(settings.threads) for name in THREAD_ENV}
    options: dict[str, Any] = {"initializer": init_worker, "initargs": (os.getpid(),),
                               "env": env}
    executor = loky.get_reusable_executor(max_workers=workers, timeout=IDLE_WORKER_SECONDS,
                                          **options)
    unfinished = _collect(executor, fn, todo, settings, record)
    if not unfinished:
        return
    broken = unfinished[0][1]
    log.warning("a worker process died (%s); the %d unfinished replicate(s) are rerun one per "
                "worker process to find the one that kills its worker", _short(broken),
                len(unfinished))
    queue = []
    for task, _ in unfinished:
        stored = recover(task)
        if stored is not None:
            record(stored)
        else:
            queue.append(task)
    running: dict[Future, tuple[Task, Any]] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                task = queue.pop(0)
                single = loky.ProcessPoolExecutor(max_workers=1, **options)
                running[single.submit(run_task, fn, task, settings)] = (task, single)
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                task, single = running.pop(future)
                single.shutdown(wait=False)
                try:
                    outcome = future.result()
                except BrokenProcessPool as exc:
                    outcome = died(task, exc)
                except Exception as exc:
                    outcome = _not_run(task, exc)
                record(outcome)
    finally:
        for future, (_, single) in running.items():
            future.cancel()
            single.shutdown(wait=False, kill_workers=True)


def _collect(executor: Any, fn: Callable, todo: list[Task], settings: TaskSettings,
             record: Record) -> list[tuple[Task, BaseException]]:
    """Submit every task to ``executor`` and record outcomes as they arrive; returns the tasks
    lost to a broken pool, with the error."""
    futures = {executor.submit(run_task, fn, task, settings): task for task in todo}
    lost: list[tuple[Task, BaseException]] = []
    try:
        for future in as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool as exc:
                lost.append((task, exc))
                continue
            except Exception as exc:
                outcome = _not_run(task, exc)
            record(outcome)
    except BaseException as exc:  # record stopped the study (a full disk), or Ctrl-C
        for future in futures:
            future.cancel()  # those not yet started
        if not isinstance(exc, KeyboardInterrupt):
            wait(list(futures))  # the running ones finish (and store) before the study ends
        raise
    lost.sort(key=lambda item: item[0].index)
    return lost


def _not_run(task: Task, exc: BaseException) -> Outcome:
    return Outcome(task.index, failure=Failure.of(
        task, f"not run: {type(exc).__name__}: {_short(exc)}"))


def _short(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    codes = [line for line in lines if "exit codes" in line]
    return (codes or lines or [type(exc).__name__])[0].strip()


def _run_on_dask(client: Any, fn: Callable, todo: list[Task], settings: TaskSettings,
                 record: Record, log: StudyLog) -> None:
    """Run ``todo`` on a dask cluster: the scheduler reruns a task whose worker died (a
    killed Slurm job included) on another worker, up to its ``allowed-failures``; a task
    that outlives them (``KilledWorker``) is recorded as failed, as on loky."""
    import distributed

    shared = {addr: n for addr, n in client.nthreads().items() if n > 1}
    if shared:
        log.warning("dask workers with several threads run several replicates in one "
                    "process, sharing torch's global thread count and generator: "
                    "start workers with one thread each (--nthreads 1) for "
                    "reproducible results; found %s", shared)
    futures = {client.submit(run_task, fn, task, settings, pure=False,
                             key=f"anglesim-{task.stem}-{uuid.uuid4().hex[:8]}"): task
               for task in todo}
    try:
        for future in distributed.as_completed(list(futures), loop=client.loop):
            task = futures[future]
            try:
                outcome = future.result()
            except distributed.KilledWorker as exc:
                outcome = died(task, exc, f" (dask: {_short(exc)})")
            except Exception as exc:
                outcome = _not_run(task, exc)
            record(outcome)
    finally:
        client.cancel([f for f in futures if not f.done()])


