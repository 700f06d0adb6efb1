"""The worker side: one task run with fixed torch settings, its result checked and cached."""

from __future__ import annotations

import ctypes
import fnmatch
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .. import io
from ._cache import ReplicateCache
from ._grid import Task
from ._outcome import Failure, Outcome


@dataclass(frozen=True)
class TaskSettings:
    """What every task of one run shares: torch threads, the names fn's result may not use,
    the variables allowed to hold NaN or ±inf, the cache and the study's main process (a
    worker whose parent has died stores nothing more; see :func:`init_worker`)."""

    threads: int
    forbidden: frozenset[str]
    cache: ReplicateCache | None
    allow_nan: frozenset[str] = frozenset()
    parent_pid: int | None = None
    backend: str = "this process"


def check_result(result: Any, forbidden: Set[str], allow_nan: Set[str] = frozenset()
                  ) -> xr.Dataset:
    """fn's result, loaded; a non-Dataset, a reserved name or a NaN/±inf value outside the
    variables ``allow_nan`` names raises (and so makes the replicate a failure); its entries are
    names or :mod:`fnmatch` patterns (``"val_*"``; ``"*"`` allows every variable)."""
    if not isinstance(result, xr.Dataset):
        raise TypeError(f"fn must return an xarray.Dataset, got {type(result).__name__}")
    clash = forbidden & ({str(d) for d in result.dims} | {str(v) for v in result.variables})
    if clash:
        raise ValueError(f"fn's Dataset uses names reserved for the study's own dimensions and "
                         f"variables: {sorted(clash)}")
    result = result.load()
    for name, var in result.variables.items():
        if var.dtype.kind not in "fc" or any(fnmatch.fnmatchcase(str(name), pattern)
                                             for pattern in allow_nan):
            continue
        bad = int(np.count_nonzero(~np.isfinite(var.values)))
        if bad:
            raise FloatingPointError(
                f"variable {str(name)!r} holds NaN or inf ({bad} of {var.size} values); a study "
                f"that expects them names the variable in run_study's allow_nan")
    return io.describe(result)  # as a cached file gives it back


WATCHDOG_SECONDS = 0.25
"""How often a worker checks that the study's main process is still its parent."""


def parent_alive(parent_pid: int | None) -> bool:
    return parent_pid is None or os.getppid() == parent_pid


def init_worker(parent_pid: int) -> None:
    """Worker-process initializer: end this process once ``parent_pid`` is no longer its parent.

    When the study's main process dies (``kill -9``, the out-of-memory killer), its workers are
    re-parented; a daemon thread polling :func:`os.getppid` every :data:`WATCHDOG_SECONDS`
    then ends the worker with ``os._exit(1)``, whatever it is computing, and a task that
    finishes before the thread notices stores nothing (:func:`run_task` checks the parent before
    writing). ``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when the *thread* that started
    the worker ends, which for loky's executor-manager thread is not the main process's death.
    """
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="anglesim-parent-watchdog", daemon=True).start()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_malloc_configured = False


def configure_malloc() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system.

    By default glibc serves every allocation above a (dynamic) threshold of at most 32 MiB with
    its own ``mmap`` and unmaps it on ``free``; torch's CPU tensors are such allocations, so a
    loop that repeatedly makes and frees large temporaries (the Jacobians of
    :func:`anglesim.fisher.propagated_fisher`) pays a page fault for every 4 KiB page of every
    temporary, all of it system time. Setting ``M_MMAP_THRESHOLD`` to 1 GiB and
    ``M_TRIM_THRESHOLD`` to 2 GiB (``mallopt(3)``) keeps those blocks in the heap: measured on
    the quickstart's Fisher step, 7.7 M page faults and 11.6 s of system time became 0.5 M and
    1.9 s, and its wall time fell from 27 s to 17 s. The cost is that a process keeps its peak
    heap until it exits. Called once per process by each task; a no-op off Linux/glibc or when
    the environment variable ``ANGLESIM_MALLOC_TUNING`` is ``0``.

    Returns:
        Whether the settings are in effect in this process.
    """
    global _malloc_configured
    if _malloc_configured:
        return True
    if os.environ.get("ANGLESIM_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
            "linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _malloc_configured = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(
        mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    return _malloc_configured


def run_task(fn: Callable, task: Task, settings: TaskSettings) -> Outcome:
    """Compute one replicate (in whichever process runs it) and, with a cache, store it.

    Never raises for an error in ``fn``: the outcome holds either the result or the failure,
    a ``cache_error`` if storing it failed, and the times ``fn_seconds`` (fn alone) and
    ``task_seconds`` (this whole function: settings, fn, checks, writing the cache file).
    """
    import torch

    started = time.perf_counter()
    if settings.cache is not None:
        # a rerun of a task this run already stored: dask reschedules the tasks of a worker
        # that died (a cancelled Slurm job) though it finished some whose outcome it had not
        # handed back yet; the run holds the task's lock, so the file is from this run
        stored = settings.cache.stored_result(task)
        if stored is not None:
            return stored
    outcome = Outcome(task.index, backend=settings.backend,
                      slurm_job=os.environ.get("SLURM_JOB_ID") or None)
    configure_malloc()
    previous_threads = torch.get_num_threads()
    fn_seconds = 0.0
    try:
        torch.set_num_threads(settings.threads)
        # a guard for code that draws from torch's global generator; forked so that running
        # in the caller's process (n_jobs=1) leaves the caller's generator as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.seed)
            fn_started = time.perf_counter()
            try:
                result = fn(dict(task.condition), task.replicate, task.seed)
            finally:
                fn_seconds = time.perf_counter() - fn_started
        outcome.result = check_result(result, settings.forbidden, settings.allow_nan)
    except Exception as exc:
        outcome.failure = Failure.of(task, f"{type(exc).__name__}: {exc}",
                                     traceback.format_exc())
    finally:
        torch.set_num_threads(previous_threads)

    if settings.cache is not None:
        if not parent_alive(settings.parent_pid):
            os._exit(1)  # the study's main process is gone: store nothing more
        settings.cache.dump(task, outcome)
    outcome.fn_seconds = fn_seconds
    outcome.task_seconds = time.perf_counter() - started
    return outcome
