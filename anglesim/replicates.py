"""Run a grid of conditions × replicate seeds and gather the results in one Dataset.

A study is a function ``fn(condition, replicate, seed) -> xr.Dataset`` that computes one
replicate of one condition, a grid ``{axis: values}`` whose Cartesian product gives the
conditions, and a number of replicates. :func:`run_study` runs every (condition, replicate)
pair as its own task, in this process or in joblib workers (loky locally, dask.distributed on a
cluster), and stacks the per-replicate Datasets along new dimensions named after the grid axes
and ``replicate``.

* Seeds: replicate ``r`` of condition ``c`` gets ``replicate_seed(seed, condition_id(c), r)``,
  derived with :class:`numpy.random.SeedSequence`, so results depend neither on the number of
  workers, nor on the backend, nor on the order in which tasks finish, nor on the other
  conditions in the grid (extending or reordering a grid keeps every existing condition's seeds
  and cached files).
* Determinism: each task runs with a fixed torch thread count (``threads_per_worker``, 1 by
  default) and torch's global generator seeded with the replicate's seed, so on a CPU the same
  study seed gives bit-identical results whatever ``n_jobs`` and backend. (A different thread
  count changes the order of floating-point reductions and hence the last bits.) On a GPU,
  cuDNN's algorithm choice and atomic-add kernels (e.g. the backward of convolutions,
  ``index_add``/``scatter_add``) are not deterministic unless
  ``torch.use_deterministic_algorithms(True)`` is set (with ``CUBLAS_WORKSPACE_CONFIG=:4096:8``)
  and ``torch.backends.cudnn.benchmark`` is off; results also differ between GPU models and
  between GPU and CPU.
* Cache: with ``cache_dir`` each finished replicate is written to its own netCDF file as soon
  as it is done (to a temporary name, flushed, then renamed; with a checksum of its data and the
  hash of everything that determined it), so a study killed at any moment resumes where it
  stopped. A cached file that is truncated, corrupted (checksum), or was made by another config,
  seed or anglesim version is reported (a :class:`CacheWarning` and the study log) and
  recomputed, never merged; a corrupted file is kept aside as ``<file>.corrupt``.
* Failures: an exception in ``fn`` (training raises ``FloatingPointError`` when a loss becomes
  NaN) marks that replicate as failed (NaN-filled) without stopping the others; its condition,
  seed, message and traceback go to the Dataset's failure table (:func:`failure_table`) and,
  with a cache, to a ``.failed.json`` record that later runs reuse unless ``retry_failed``.
* Progress and logs: a progress bar counts replicates done, failed and cached, with an ETA from
  the replicates computed in this run; with a cache, every run appends to one log file per
  study, ``<cache_dir>/<name>/study.log``. :func:`study_status` reports what is cached, failed
  and missing without running anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import itertools
import json
import logging
import math
import numbers
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import xarray as xr
from tqdm import tqdm

from . import io

logger = logging.getLogger("anglesim.replicates")

RESERVED_NAMES = ("replicate", "failed", "error", "replicate_seed")
"""Names that neither a grid axis nor a variable or dimension of fn's result may use."""

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

CACHE_HASH_ATTR = "cache_config_hash"
"""Attribute of a cached replicate file holding the hash of what produced it."""

FAILURES_ATTR = "failures"
"""Dataset attribute holding the failure table: a list of records (see :func:`failure_table`)."""

LOG_NAME = "study.log"
"""File name of a study's log inside its cache folder."""

STALE_TEMP_SECONDS = 600.0
"""Temporary files older than this in a study's cache folder are left over from a killed run
and are removed when the study starts (a replicate's write takes milliseconds)."""

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._=,+-]")


class CacheWarning(UserWarning):
    """A cached replicate or failure record could not be used and is being recomputed."""


# --------------------------------------------------------------------------------------------
# seeds and conditions


def _check_index(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def replicate_seed(seed: int, condition_index: int, replicate: int) -> int:
    """The seed of one replicate of one condition, in [0, 2**63).

    It is the first 64-bit word of ``SeedSequence(seed, spawn_key=(condition_index,
    replicate)).generate_state`` shifted right by one bit (so it fits an int64): the same
    arguments always give the same seed, and different (condition_index, replicate) pairs give
    statistically independent streams (O'Neill 2015; numpy's SeedSequence spawning).
    ``condition_index`` is any non-negative integer naming the condition; :func:`run_study`
    uses :func:`condition_id`.

    Raises:
        ValueError: if any argument is not a non-negative integer.
    """
    seed = _check_index("seed", seed)
    condition_index = _check_index("condition_index", condition_index)
    replicate = _check_index("replicate", replicate)
    words = np.random.SeedSequence(seed, spawn_key=(condition_index, replicate)).generate_state(
        1, dtype=np.uint64)
    return int(words[0]) >> 1


def _axis_values(name: str, values: Any) -> list[str | int | float | bool]:
    """Validated values of one grid axis, numpy scalars turned into Python ones."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"grid axis {name!r} must be a list of values, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if not isinstance(v, (str, int, float, bool)):
            raise ValueError(f"grid axis {name!r}: values must be str, int, float or bool, "
                             f"got {v!r} of type {type(v).__name__}")
        if isinstance(v, float) and math.isnan(v):
            raise ValueError(f"grid axis {name!r}: NaN is not a usable condition value")
        out.append(v)
    if not out:
        raise ValueError(f"grid axis {name!r} is empty; give it at least one value")
    kinds = {"str" if isinstance(v, str) else "bool" if isinstance(v, bool) else "number"
             for v in out}
    if len(kinds) > 1:
        raise ValueError(f"grid axis {name!r} mixes value types ({', '.join(sorted(kinds))}): "
                         f"{out!r}; one axis becomes one coordinate, so use one type")
    seen: list = []
    for v in out:
        if v in seen:
            raise ValueError(f"grid axis {name!r} has the value {v!r} more than once")
        seen.append(v)
    return out


def _check_grid(grid: Any) -> dict[str, list]:
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a dict of axis name -> list of values, got {grid!r}")
    axes = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"grid axis names must be non-empty strings, got {name!r}")
        axes[name] = _axis_values(name, values)
    return axes


def iter_conditions(grid: Mapping[str, Sequence]) -> list[dict]:
    """All conditions of a grid: the Cartesian product of its axes, first axis slowest.

    ``iter_conditions({"a": [1, 2], "b": ["x", "y"]})`` gives ``[{"a": 1, "b": "x"},
    {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]``; an empty grid gives one
    empty condition. Numpy scalars are turned into the Python ones.

    Raises:
        ValueError: if ``grid`` is not a mapping, an axis name is not a non-empty string, an
            axis is empty or not a list, a value is not a str/int/float/bool (or is NaN), an
            axis mixes strings, booleans and numbers, or repeats a value.
    """
    axes = _check_grid(grid)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def condition_id(condition: Mapping[str, Any]) -> int:
    """A 64-bit integer naming a condition by its values: ``int(config_hash(condition), 16)``.

    It depends only on the condition itself (axis names, values and their types: 1 and 1.0
    differ), not on its position in a grid.
    """
    return int(io.config_hash(dict(condition)), 16)


def condition_key(condition: Mapping[str, Any]) -> str:
    """A file-name-safe, readable key of a condition, e.g. ``kappa=4.0,loss=cosine-1a2b3c4d``.

    The readable part (axis=value pairs, unsafe characters replaced by ``_``, at most 80
    characters) is followed by 8 hex digits of the condition's hash, so two conditions never
    share a key even when their readable parts do.
    """
    readable = ",".join(f"{k}={v}" for k, v in condition.items())
    readable = _UNSAFE_CHARS.sub("_", readable)[:80] or "default"
    return f"{readable}-{io.config_hash(dict(condition))[:8]}"


# --------------------------------------------------------------------------------------------
# tasks


@dataclass(frozen=True)
class _Task:
    index: int  # position in the flat (condition, replicate) list
    condition_index: int
    condition: dict
    replicate: int
    seed: int
    key: dict  # everything that determines the result: study config, condition, seeds
    config_hash: str  # io.config_hash(key)
    stem: str  # cache file name without suffix

    def describe(self) -> str:
        return f"replicate {self.replicate} of condition {self.condition} (seed {self.seed})"


def _plan(axes: dict[str, list], n_replicates: int, seed: int,
          config: Mapping[str, Any] | None) -> list[_Task]:
    """Every (condition, replicate) task of a study, in the order of the assembled Dataset."""
    tasks: list[_Task] = []
    for ci, condition in enumerate(iter_conditions(axes)):
        cid = condition_id(condition)
        stem = condition_key(condition)
        for r in range(n_replicates):
            s = replicate_seed(seed, cid, r)
            key = {"config": config, "condition": condition, "replicate": r, "seed": seed,
                   "replicate_seed": s}
            tasks.append(_Task(len(tasks), ci, condition, r, s, key, io.config_hash(key),
                               f"{stem}__r{r}"))
    return tasks


def _check_result(result: Any, forbidden: set[str]) -> xr.Dataset:
    if not isinstance(result, xr.Dataset):
        raise TypeError(f"fn must return an xarray.Dataset, got {type(result).__name__}")
    clash = forbidden & ({str(d) for d in result.dims} | {str(v) for v in result.variables})
    if clash:
        raise ValueError(f"fn's Dataset uses names reserved for the study's own dimensions and "
                         f"variables: {sorted(clash)}")
    return result.load()


def _failure_record(task: _Task, error: str, tb: str) -> dict:
    return {"condition": task.condition, "condition_index": task.condition_index,
            "replicate": task.replicate, "seed": task.seed, "error": error, "traceback": tb,
            "config_hash": task.config_hash}


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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

    from . import __version__

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


# --------------------------------------------------------------------------------------------
# cache


def _strip_cache_attrs(ds: xr.Dataset) -> xr.Dataset:
    ds.attrs = {k: v for k, v in ds.attrs.items()
                if k not in io.PROVENANCE_KEYS and k != CACHE_HASH_ATTR}
    return ds


def _quarantine(path: Path) -> Path | None:
    """Move an unusable cached file aside (``<file>.corrupt``) rather than overwrite it."""
    target = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target


def _from_cache(task: _Task, cache: Path, retry_failed: bool,
                problems: list[tuple[str, Path, str]], inspect: bool = False) -> dict | None:
    """The stored outcome of ``task``, or None if it must be computed.

    A stored file that exists but cannot be used is appended to ``problems`` as
    ``(kind, path, reason)``, kind ``"corrupt"`` (unreadable, truncated, checksum mismatch, not
    an anglesim file) or ``"stale"`` (made by another config, seed, condition or anglesim
    version). Corrupt files are moved aside unless ``inspect`` (which changes nothing on disk).
    """
    from . import __version__

    data_path = cache / f"{task.stem}.nc"
    failed_path = cache / f"{task.stem}.failed.json"
    if data_path.exists():
        try:
            ds = io.load_dataset(data_path)
        except Exception as exc:
            problems.append(("corrupt", data_path, f"{type(exc).__name__}: {exc}"))
            if not inspect:
                _quarantine(data_path)
        else:
            found_hash = ds.attrs.get(CACHE_HASH_ATTR)
            found_version = ds.attrs.get("anglesim_version")
            if found_hash != task.config_hash:
                problems.append(("stale", data_path, f"config hash {found_hash!r}, this run's "
                                 f"is {task.config_hash!r}"))
            elif found_version != __version__:
                problems.append(("stale", data_path, f"made by anglesim {found_version!r}, "
                                 f"this is {__version__!r}"))
            else:
                return {"index": task.index, "result": _strip_cache_attrs(ds), "cached": True}
    if failed_path.exists():
        try:
            record = json.loads(failed_path.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("error"), str):
                raise ValueError("not a failure record (no 'error' entry)")
        except (OSError, ValueError) as exc:
            problems.append(("corrupt", failed_path, f"{type(exc).__name__}: {exc}"))
            if not inspect:
                _quarantine(failed_path)
            return None
        if record.get("config_hash") != task.config_hash:
            problems.append(("stale", failed_path, f"config hash {record.get('config_hash')!r}, "
                             f"this run's is {task.config_hash!r}"))
            return None
        if record.get("anglesim_version") != __version__:
            problems.append(("stale", failed_path, f"made by anglesim "
                             f"{record.get('anglesim_version')!r}, this is {__version__!r}"))
            return None
        if retry_failed and not inspect:
            logger.info("retrying %s (recorded failure: %s)", failed_path.name, record["error"])
            return None
        return {"index": task.index, "failure": {**record, "condition": task.condition},
                "cached": True}
    return None


def _report_cache_problems(problems: list[tuple[str, Path, str]], log: _StudyLog,
                           shown: int = 5) -> None:
    """One CacheWarning (and log line) per corrupt file; one for all stale files (a changed
    config makes every file stale), naming the first few; every stale file in the log."""
    stale = [(path, reason) for kind, path, reason in problems if kind == "stale"]
    for kind, path, reason in problems:
        if kind == "corrupt":
            message = (f"cached file {path} cannot be used and its replicate is recomputed "
                       f"(the file is kept as {path.name}.corrupt): {reason}")
            log.warning("%s", message)
            warnings.warn(message, CacheWarning, stacklevel=3)
    if stale:
        listed = "; ".join(f"{path.name} ({reason})" for path, reason in stale[:shown])
        more = f"; and {len(stale) - shown} more" if len(stale) > shown else ""
        message = (f"{len(stale)} cached file(s) in {stale[0][0].parent} were made by another "
                   f"config, seed, condition or anglesim version and are recomputed: "
                   f"{listed}{more}")
        log.warning("%s", message)
        for path, reason in stale:
            log.info("stale: %s (%s)", path.name, reason)
        warnings.warn(message, CacheWarning, stacklevel=3)


def _temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp")) if folder.is_dir() else []


def _remove_stale_temps(folder: Path, log: _StudyLog) -> None:
    """Remove temporary files a killed run left behind (older than STALE_TEMP_SECONDS)."""
    now = time.time()
    for path in _temp_files(folder):
        try:
            if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                path.unlink()
                log.info("removed %s, left over from an interrupted write", path.name)
        except OSError:
            pass


def _prepare_cache(cache_dir: str | os.PathLike[str], name: str) -> Path:
    """Create ``cache_dir/name`` and check that files can be written there.

    Raises:
        ValueError: naming ``cache_dir`` if it cannot be created or written to.
    """
    cache = Path(cache_dir) / name
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, prefix=".write-test-", suffix=".tmp"):
            pass
    except OSError as exc:
        raise ValueError(f"cache_dir {str(cache_dir)!r} is not writable: {exc.strerror or exc} "
                         f"({cache})") from None
    return cache


# --------------------------------------------------------------------------------------------
# the study log


class _StudyLog:
    """Messages of one study: to the module logger (console) and, with a path, appended to the
    study's log file with timestamps. Only the file gets DEBUG details (tracebacks)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._file: logging.Logger | None = None
        self._handler: logging.Handler | None = None
        if path is not None:
            # a logger outside logging's hierarchy: nothing propagates to the root's handlers
            self._file = logging.Logger(f"anglesim.study:{path}", level=logging.DEBUG)
            self._handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
            self._handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)-7s %(message)s"))
            self._file.addHandler(self._handler)

    def log(self, level: int, msg: str, *args: Any, console: bool = True) -> None:
        if self._file is not None:
            self._file.log(level, msg, *args)
        if console:
            logger.log(level, msg, *args)

    def debug(self, msg: str, *args: Any) -> None:
        self.log(logging.DEBUG, msg, *args, console=False)

    def info(self, msg: str, *args: Any) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, msg, *args)

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            assert self._file is not None
            self._file.removeHandler(self._handler)


# --------------------------------------------------------------------------------------------
# assembly


def _filled_like(template: xr.Dataset) -> xr.Dataset:
    """A Dataset shaped like ``template`` whose data variables hold 'missing' values:
    NaN for floats (and for integers, which become float64), False for booleans, "" for
    strings, NaT for datetimes."""
    filled = template.copy(deep=False)
    for name, var in template.data_vars.items():
        kind = var.dtype.kind
        if kind in "fc":
            filled[name] = xr.full_like(var, np.nan)
        elif kind in "iu":
            filled[name] = xr.full_like(var, np.nan, dtype=np.float64)
        elif kind == "b":
            filled[name] = xr.full_like(var, False)
        elif kind in "US":
            filled[name] = xr.full_like(var, "")
        elif kind in "mM":
            filled[name] = xr.full_like(var, np.datetime64("NaT") if kind == "M"
                                        else np.timedelta64("NaT"))
        else:
            filled[name] = xr.full_like(var, "", dtype=object)
    return filled


def _concat(items: list[xr.Dataset], dim: str) -> xr.Dataset:
    try:
        return xr.concat(items, dim=dim, data_vars="all", coords="different", compat="equals",
                         join="exact", combine_attrs="drop_conflicts")
    except (ValueError, KeyError) as exc:
        raise ValueError(f"the replicates' Datasets do not share one structure (variables, "
                         f"dimensions and coordinate values must match): {exc}") from exc


def _assemble(outcomes: list[dict], axes: dict[str, list], n_replicates: int) -> xr.Dataset:
    sizes = [len(v) for v in axes.values()] + [n_replicates]
    dims = [*axes, "replicate"]
    ok = [o["result"] for o in outcomes if "result" in o]
    if ok:
        failed_any = len(ok) < len(outcomes)
        if failed_any:
            # integers cannot hold NaN: every replicate's integer variables become float64
            def widen(ds: xr.Dataset) -> xr.Dataset:
                ints = [k for k, v in ds.data_vars.items() if v.dtype.kind in "iu"]
                return ds.assign({k: ds[k].astype(np.float64) for k in ints}) if ints else ds

            filler = _filled_like(ok[0])
            items = [widen(o["result"]) if "result" in o else filler for o in outcomes]
        else:
            items = [o["result"] for o in outcomes]

        def combine(flat: list[xr.Dataset], level: int) -> xr.Dataset:
            if level == len(sizes):
                return flat[0]
            step = len(flat) // sizes[level]
            parts = [combine(flat[i * step:(i + 1) * step], level + 1)
                     for i in range(sizes[level])]
            return _concat(parts, dims[level])

        ds = combine(items, 0)
        ds = ds.transpose(*dims, ...)
    else:
        ds = xr.Dataset()
    shape = tuple(sizes)
    failed = np.array(["failure" in o for o in outcomes]).reshape(shape)
    errors = np.array([o["failure"]["error"] if "failure" in o else "" for o in outcomes],
                      dtype=str).reshape(shape)
    seeds = np.array([o["seed"] for o in outcomes], dtype=np.int64).reshape(shape)
    ds["failed"] = (dims, failed)
    ds["error"] = (dims, errors)
    ds["replicate_seed"] = (dims, seeds)
    ds["failed"].attrs = {"long_name": "the replicate's computation raised an error"}
    ds["error"].attrs = {"long_name": "error message of a failed replicate ('' if none)"}
    ds["replicate_seed"].attrs = {"long_name": "seed passed to the replicate's function"}
    coords = {name: np.asarray(values) for name, values in axes.items()}
    coords["replicate"] = np.arange(n_replicates, dtype=np.int64)
    return ds.assign_coords(coords)


# --------------------------------------------------------------------------------------------
# failure table


def _failure_entries(outcomes: list[dict]) -> list[dict]:
    entries = []
    for o in outcomes:
        if "failure" in o:
            f = o["failure"]
            entries.append({"condition": dict(f["condition"]), "replicate": int(f["replicate"]),
                            "seed": int(f["seed"]), "error": f["error"],
                            "traceback": f.get("traceback", "")})
    return entries


def failure_table(ds: xr.Dataset):
    """The failed replicates of a study Dataset as a pandas DataFrame.

    One row per failed replicate, columns: the grid axes (the condition), ``replicate``,
    ``seed`` (the replicate's seed), ``error`` (exception type and message) and ``traceback``.
    Empty (with those columns) if nothing failed. Works on the Dataset :func:`run_study`
    returns and on one loaded with :func:`anglesim.io.load_dataset`.

    Raises:
        ValueError: if ``ds`` is not a Dataset made by :func:`run_study`.
    """
    import pandas as pd

    if not isinstance(ds, xr.Dataset) or FAILURES_ATTR not in ds.attrs or "grid" not in ds.attrs:
        raise ValueError("ds must be a Dataset made by run_study (it has no failure table: "
                         f"attrs {FAILURES_ATTR!r} and 'grid' are missing)")
    axes = list(json.loads(ds.attrs["grid"]))
    columns = [*axes, "replicate", "seed", "error", "traceback"]
    rows = [{**e["condition"], "replicate": e["replicate"], "seed": e["seed"],
             "error": e["error"], "traceback": e["traceback"]} for e in ds.attrs[FAILURES_ATTR]]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# run_study


def _check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


@dataclass
class StudyStatus:
    """What a study's cache holds, from :func:`study_status` (nothing is run or changed).

    Lists hold ``(condition, replicate)`` pairs, except ``failed`` (failure records with
    ``condition``, ``replicate``, ``seed``, ``error``, ``traceback``) and ``problems``
    (``(kind, file name, reason)``, kind "corrupt" or "stale"; such replicates are also listed
    as missing, since a run recomputes them).
    """

    name: str
    cache: Path | None
    total: int
    cached: list[tuple[dict, int]] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    missing: list[tuple[dict, int]] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    temp_files: int = 0

    def summary(self, shown: int = 10) -> str:
        """Several lines for people: counts, then the failed and missing replicates."""
        where = self.cache if self.cache is not None else "no cache"
        lines = [f"study {self.name} ({where}): {self.total} replicates: "
                 f"{len(self.cached)} cached, {len(self.failed)} failed, "
                 f"{len(self.missing)} missing"]
        for kind in ("corrupt", "stale"):
            n = sum(p[0] == kind for p in self.problems)
            if n:
                lines.append(f"  {n} {kind} file(s) will be recomputed (counted as missing)")
        if self.temp_files:
            lines.append(f"  {self.temp_files} temporary file(s) left by interrupted writes")
        for f in self.failed[:shown]:
            lines.append(f"  failed: replicate {f['replicate']} of {f['condition']} "
                         f"(seed {f['seed']}): {f['error']}")
        if len(self.failed) > shown:
            lines.append(f"  … and {len(self.failed) - shown} more failed")
        for condition, r in self.missing[:shown]:
            lines.append(f"  missing: replicate {r} of {condition}")
        if len(self.missing) > shown:
            lines.append(f"  … and {len(self.missing) - shown} more missing")
        return "\n".join(lines)


_INSPECT: contextvars.ContextVar[list[StudyStatus] | None] = contextvars.ContextVar(
    "anglesim_inspect", default=None)


class StudyInspected(BaseException):
    """Raised by :func:`run_study` inside :func:`inspecting` once it has recorded the study's
    status, so that the study script calling it stops before computing or saving anything.
    A BaseException, so a study's own ``except Exception`` does not swallow it."""


@contextlib.contextmanager
def inspecting() -> Iterator[list[StudyStatus]]:
    """Within this context :func:`run_study` runs nothing: it appends the :class:`StudyStatus`
    of the study it was asked to run to the yielded list and stops the caller.

    This lets ``anglesim status STUDY`` call a study script's own ``run(...)`` (which knows its
    grid, config and replicates) without running or saving anything::

        with inspecting() as found:
            module.run(quick=True)
        print(found[0].summary())
    """
    found: list[StudyStatus] = []
    token = _INSPECT.set(found)
    try:
        yield found
    except StudyInspected:
        pass
    finally:
        _INSPECT.reset(token)


def _validated(fn: Any, grid: Any, n_replicates: Any, seed: Any, name: Any,
               config: Any) -> tuple[dict[str, list], int, int]:
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    axes = _check_grid(grid)
    for axis in axes:
        if axis in RESERVED_NAMES:
            raise ValueError(f"grid axis name {axis!r} is reserved; reserved names are "
                             f"{list(RESERVED_NAMES)}")
    n_replicates = _check_int("n_replicates", n_replicates, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name must be 1-100 letters, digits, '.', '_' or '-' starting with a "
                         f"letter or digit, got {name!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict or None, got {config!r}")
    io.to_json(config)  # fail now, not after the computation, if config is not JSON-encodable
    return axes, n_replicates, seed


def study_status(
    grid: Mapping[str, Sequence],
    n_replicates: int,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str = "study",
    config: Mapping[str, Any] | None = None,
) -> StudyStatus:
    """Which replicates of a study are cached, failed or missing; runs and changes nothing.

    The arguments are those of :func:`run_study` (``fn`` is not needed): a replicate counts as
    cached or failed only if its file matches this config, seed, condition and anglesim
    version, exactly as :func:`run_study` would decide.

    Raises:
        ValueError: for invalid arguments, as :func:`run_study`.
    """
    axes, n_replicates, seed = _validated(len, grid, n_replicates, seed, name, config)
    tasks = _plan(axes, n_replicates, seed, config)
    cache = Path(cache_dir) / name if cache_dir is not None else None
    status = StudyStatus(name, cache, len(tasks))
    if cache is None or not cache.is_dir():
        status.missing = [(t.condition, t.replicate) for t in tasks]
        return status
    problems: list[tuple[str, Path, str]] = []
    for task in tasks:
        stored = _from_cache(task, cache, False, problems, inspect=True)
        if stored is None:
            status.missing.append((task.condition, task.replicate))
        elif "failure" in stored:
            status.failed.extend(_failure_entries([stored]))
        else:
            status.cached.append((task.condition, task.replicate))
    status.problems = [(kind, path.name, reason) for kind, path, reason in problems]
    status.temp_files = len(_temp_files(cache))
    return status


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
        return _run_logged(fn, axes, n_replicates, seed, n_jobs, cache, name, config,
                           progress, retry_failed, threads_per_worker, backend, scheduler, log)
    finally:
        log.close()


def _run_logged(fn: Callable, axes: dict[str, list], n_replicates: int, seed: int,
                n_jobs: int, cache: Path | None, name: str, config: Mapping[str, Any] | None,
                progress: bool, retry_failed: bool, threads_per_worker: int | str | None,
                backend: str, scheduler: str | None, log: _StudyLog) -> xr.Dataset:
    from . import __version__

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
            stored = (_from_cache(task, cache, retry_failed, problems) if cache is not None
                      else None)
            if stored is None:
                todo.append(task)
            else:
                record(stored)
        _report_cache_problems(problems, log)

        if todo:
            workers, threads = _workers_and_threads(n_jobs, len(todo), backend,
                                                    threads_per_worker)
            log.info("study %s: %d of %d replicate(s) to compute (%d cached, %d failed "
                     "earlier) on %s worker(s) (%s) with %d torch thread(s) each", name,
                     len(todo), len(tasks), counts["cached"] - counts["failed"],
                     counts["failed"], "1" if n_jobs == 1 else workers,
                     "this process" if n_jobs == 1 else backend, threads)
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
                                           backend, scheduler, record, log)
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
