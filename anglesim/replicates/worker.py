"""The worker side: one task run with fixed torch settings, its result checked and cached."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from .. import io
from .cache import CACHE_HASH_ATTR, _failure_record, _write_text_atomic
from .grid import _Task


def _check_result(result: Any, forbidden: set[str]) -> xr.Dataset:
    if not isinstance(result, xr.Dataset):
        raise TypeError(f"fn must return an xarray.Dataset, got {type(result).__name__}")
    clash = forbidden & ({str(d) for d in result.dims} | {str(v) for v in result.variables})
    if clash:
        raise ValueError(f"fn's Dataset uses names reserved for the study's own dimensions and "
                         f"variables: {sorted(clash)}")
    return result.load()


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


def _run_task(fn: Callable, task: _Task, n_threads: int, forbidden: set[str],
              cache: Path | None) -> dict:
    """Compute one replicate (in whichever process runs it) and, with a cache, store it.

    Never raises for an error in ``fn``: the outcome is a dict with either ``result`` or
    ``failure``, ``cache_error`` if storing it failed, and the times ``fn_seconds`` (fn alone)
    and ``task_seconds`` (this whole function: settings, fn, checks, writing the cache file).
    """
    import torch

    from .. import __version__

    started = time.perf_counter()
    outcome: dict[str, Any] = {"index": task.index}
    configure_malloc()
    previous_threads = torch.get_num_threads()
    fn_seconds = 0.0
    try:
        torch.set_num_threads(n_threads)
        # a guard for code that draws from torch's global generator; forked so that running
        # in the caller's process (n_jobs=1) leaves the caller's generator as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.seed)
            fn_started = time.perf_counter()
            try:
                result = fn(dict(task.condition), task.replicate, task.seed)
            finally:
                fn_seconds = time.perf_counter() - fn_started
        outcome["result"] = _check_result(result, forbidden)
    except Exception as exc:
        outcome["failure"] = _failure_record(task, f"{type(exc).__name__}: {exc}",
                                             traceback.format_exc())
    finally:
        torch.set_num_threads(previous_threads)

    if cache is not None:
        data_path = cache / f"{task.stem}.nc"
        failed_path = cache / f"{task.stem}.failed.json"
        try:
            if "result" in outcome:
                ds = outcome["result"].copy(deep=False)
                ds.attrs = {**ds.attrs, CACHE_HASH_ATTR: task.config_hash}
                io.save_dataset(ds, data_path, config=task.key, seed=task.seed)
                failed_path.unlink(missing_ok=True)
            else:
                record = {**outcome["failure"], "anglesim_version": __version__}
                _write_text_atomic(failed_path, json.dumps(record, indent=1, sort_keys=True,
                                                           default=io._json_default))
                data_path.unlink(missing_ok=True)
        except Exception as exc:
            outcome["cache_error"] = f"{type(exc).__name__}: {exc}"
    outcome["fn_seconds"] = fn_seconds
    outcome["task_seconds"] = time.perf_counter() - started
    return outcome

