"""Backends: running tasks in loky or dask.distributed worker processes."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib

from .grid import _Task
from .log import _StudyLog
from .worker import _run_task

BACKENDS = ("loky", "dask")
"""joblib backends run_study accepts for n_jobs != 1. Both run tasks in separate processes,
which the per-task torch settings (thread count, global seed) need; "dask" uses the scheduler
given as ``scheduler``, else the current dask.distributed Client, else a LocalCluster."""

DEFAULT_THREADS = 1
"""torch threads per task unless ``threads_per_worker`` says otherwise. Fixed (not derived from
the number of workers) so that results do not depend on ``n_jobs``: the thread count changes
the order of floating-point sums. Small networks gain little from more threads; run more
workers instead (workers × threads = cores)."""

DASK_CONNECT_TIMEOUT = 30.0
"""Seconds to wait for a dask scheduler given by address before giving up."""

def _workers_and_threads(n_jobs: int, n_todo: int, backend: str,
                         threads_per_worker: int | str | None) -> tuple[int, int]:
    if n_jobs == 1:
        workers = 1
    elif backend == "dask":
        workers = n_todo if n_jobs < 0 else min(n_jobs, n_todo)
    else:
        workers = min(joblib.effective_n_jobs(n_jobs), n_todo)
    if threads_per_worker is None:
        threads = DEFAULT_THREADS
    elif threads_per_worker == "auto":
        threads = max(1, joblib.cpu_count() // workers) if backend == "loky" or n_jobs == 1 \
            else DEFAULT_THREADS
    else:
        threads = int(threads_per_worker)
    return workers, threads


@contextlib.contextmanager
def _dask_client(scheduler: str | None, workers: int, log: _StudyLog) -> Iterator[Any]:
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


def _run_parallel(fn: Callable, todo: list[_Task], threads: int, forbidden: set[str],
                  cache: Path | None, workers: int, backend: str, scheduler: str | None,
                  record: Callable[[dict], None], log: _StudyLog) -> str | None:
    """Run tasks in joblib workers, recording each outcome as it arrives.

    If the pool itself fails (a worker killed, a lost cluster, fn not picklable), the error is
    logged and returned, and the tasks that did not report stay unrecorded; those that did are
    kept. Returns None if the pool ran to the end."""
    with contextlib.ExitStack() as stack:
        options: dict[str, Any] = {"backend": backend}
        if backend == "loky":
            options["inner_max_num_threads"] = threads  # BLAS/OpenMP threads of each worker
        else:
            client = stack.enter_context(_dask_client(scheduler, workers, log))
            options["client"] = client
            shared = {addr: n for addr, n in client.nthreads().items() if n > 1}
            if shared:
                log.warning("dask workers with several threads run several replicates in one "
                            "process, sharing torch's global thread count and generator: "
                            "start workers with one thread each (--nthreads 1) for "
                            "reproducible results; found %s", shared)
        # loky replaces a worker whose memory grew by more than 300 MB between two tasks (a
        # reference-MLP replicate does) and says so with a warning that blames "a too short
        # worker timeout or a memory leak" (joblib issue #869). The replacement is deliberate
        # and loses nothing; a worker that dies mid-task still surfaces as an error below.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given",
                                category=UserWarning)
        try:
            with joblib.parallel_config(**options):
                parallel = joblib.Parallel(n_jobs=workers, return_as="generator_unordered")
                for outcome in parallel(joblib.delayed(_run_task)(fn, task, threads, forbidden,
                                                                  cache) for task in todo):
                    record(outcome)
        except Exception as exc:
            log.error("the %s worker pool failed (%s: %s); replicates not yet finished are "
                      "marked as failed and not recorded in the cache", backend,
                      type(exc).__name__, exc)
            return f"{type(exc).__name__}: {exc}"
    return None
