"""Run a grid of conditions × replicate seeds and gather the results in one Dataset.

A study is a function ``fn(condition, replicate, seed) -> xr.Dataset`` that computes one
replicate of one condition, a grid ``{axis: values}`` whose Cartesian product gives the
conditions, and a number of replicates. :func:`run_study` runs every (condition, replicate)
pair as its own task, in this process or in joblib workers, and stacks the per-replicate
Datasets along new dimensions named after the grid axes and ``replicate``.

* Seeds: replicate ``r`` of condition ``c`` gets ``replicate_seed(seed, condition_id(c), r)``,
  derived with :class:`numpy.random.SeedSequence`, so results depend neither on the number of
  workers, nor on the order in which tasks finish, nor on the other conditions in the grid
  (extending or reordering a grid keeps every existing condition's seeds and cached files).
* Cache: with ``cache_dir`` each finished replicate is written to its own file as soon as it
  is done; a rerun with the same study config reuses it, so an interrupted study resumes.
* Failures: an exception in ``fn`` marks that replicate as failed (NaN-filled, with its error
  message) without stopping the others; with a cache the failure is recorded and not retried
  unless asked.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import numbers
import os
import re
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
which the per-task torch settings (thread count, global seed) need; "dask" needs an active
dask.distributed Client."""

CACHE_HASH_ATTR = "cache_config_hash"
"""Attribute of a cached replicate file holding the hash of what produced it."""

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
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _run_task(fn: Callable, task: _Task, n_threads: int, forbidden: set[str],
              cache: Path | None) -> dict:
    """Compute one replicate (in whichever process runs it) and, with a cache, store it.

    Never raises for an error in ``fn``: the outcome is a dict with either ``result`` or
    ``failure``, and ``cache_error`` if storing it failed.
    """
    import torch

    from . import __version__

    outcome: dict[str, Any] = {"index": task.index}
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(n_threads)
        # a guard for code that draws from torch's global generator; forked so that running
        # in the caller's process (n_jobs=1) leaves the caller's generator as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.seed)
            result = fn(dict(task.condition), task.replicate, task.seed)
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
    return outcome


def _strip_cache_attrs(ds: xr.Dataset) -> xr.Dataset:
    ds.attrs = {k: v for k, v in ds.attrs.items()
                if k not in io.PROVENANCE_KEYS and k != CACHE_HASH_ATTR}
    return ds


def _from_cache(task: _Task, cache: Path, retry_failed: bool,
                problems: list[tuple[str, Path, str]]) -> dict | None:
    """The stored outcome of ``task``, or None if it must be computed.

    A stored file that exists but cannot be used is appended to ``problems`` as
    ``(kind, path, reason)``, kind ``"unreadable"`` or ``"stale"`` (made by another config,
    seed, condition or anglesim version).
    """
    from . import __version__

    data_path = cache / f"{task.stem}.nc"
    failed_path = cache / f"{task.stem}.failed.json"
    if data_path.exists():
        try:
            ds = io.load_dataset(data_path)
        except Exception as exc:
            problems.append(("unreadable", data_path, f"{type(exc).__name__}: {exc}"))
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
            problems.append(("unreadable", failed_path, f"{type(exc).__name__}: {exc}"))
            return None
        if record.get("config_hash") != task.config_hash:
            problems.append(("stale", failed_path, f"config hash {record.get('config_hash')!r}, "
                             f"this run's is {task.config_hash!r}"))
            return None
        if record.get("anglesim_version") != __version__:
            problems.append(("stale", failed_path, f"made by anglesim "
                             f"{record.get('anglesim_version')!r}, this is {__version__!r}"))
            return None
        if retry_failed:
            logger.info("retrying %s (recorded failure: %s)", failed_path.name, record["error"])
            return None
        return {"index": task.index, "failure": {**record, "condition": task.condition},
                "cached": True}
    return None


def _warn_cache_problems(problems: list[tuple[str, Path, str]], shown: int = 5) -> None:
    """One CacheWarning per unreadable file; one for all stale files (a changed config makes
    every file stale), naming the first few."""
    stale = [(path, reason) for kind, path, reason in problems if kind == "stale"]
    for kind, path, reason in problems:
        if kind == "unreadable":
            warnings.warn(f"cached file {path} cannot be used and its replicate is recomputed: "
                          f"{reason}", CacheWarning, stacklevel=3)
    if stale:
        listed = "; ".join(f"{path.name} ({reason})" for path, reason in stale[:shown])
        more = f"; and {len(stale) - shown} more" if len(stale) > shown else ""
        warnings.warn(f"{len(stale)} cached file(s) in {stale[0][0].parent} were made by another "
                      f"config, seed, condition or anglesim version and are recomputed: "
                      f"{listed}{more}", CacheWarning, stacklevel=3)


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
# run_study


def _check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


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
    threads_per_worker: int | None = None,
    backend: str = "loky",
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
            joblib workers (negative values count back from the number of cores, as in
            joblib). Never more workers than tasks to run are started.
        cache_dir: if given, each finished replicate is stored as
            ``cache_dir/name/<condition_key>__r<replicate>.nc`` (a failure as
            ``….failed.json``) and reused by later runs whose config, seed, condition and
            anglesim version match; anything else found there is reported with a
            :class:`CacheWarning` and recomputed.
        name: study name; the cache subfolder; letters, digits, ``.``, ``_``, ``-``.
        config: JSON-encodable description of everything else that determines the results
            (stored in attrs, part of the cache key: change it whenever ``fn``'s behaviour
            changes, or the cache will serve old results).
        progress: show a tqdm progress bar with done/failed/cached counts.
        retry_failed: recompute replicates whose failure is recorded in the cache.
        threads_per_worker: torch threads inside each task; default
            ``max(1, joblib.cpu_count() // workers)`` so that workers × threads = cores
            (joblib's count honours CPU affinity and container limits). With ``backend="dask"``
            give it explicitly: the default counts this machine's cores.
        backend: joblib backend for ``n_jobs != 1``, one of :data:`BACKENDS`.

    In each task torch's thread count is set to ``threads_per_worker`` and torch's global
    generator is seeded with the replicate's seed (both restored afterwards).

    Returns:
        A Dataset with dims (grid axes..., ``replicate``, fn's own dims...), coordinates for
        the grid axes (their values) and ``replicate`` (0..n-1), fn's variables (a failed
        replicate holds NaN in float variables, False in bool ones, "" in string ones, NaT in
        datetime ones; integer variables become float64 with NaN when any replicate failed),
        plus ``failed`` (bool), ``error`` (str, "" if ok) and
        ``replicate_seed`` (int64) over (grid axes..., replicate). Attributes: provenance
        (:func:`anglesim.io.provenance`), ``study`` (the name), ``grid`` (JSON, axis order
        kept), ``n_replicates`` and ``n_failed``. If no replicate succeeded it holds only
        ``failed``, ``error`` and ``replicate_seed``.

    Raises:
        ValueError: for invalid arguments (naming the argument and value), or if successful
            replicates' Datasets do not share one structure.
        ModuleNotFoundError: with ``cache_dir``, if h5py (needed for netCDF4) is missing.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    axes = _check_grid(grid)
    for axis in axes:
        if axis in RESERVED_NAMES:
            raise ValueError(f"grid axis name {axis!r} is reserved; reserved names are "
                             f"{list(RESERVED_NAMES)}")
    n_replicates = _check_int("n_replicates", n_replicates, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    n_jobs = _check_int("n_jobs", n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs must be a non-zero integer (1: in this process; negative: "
                         "counted back from the number of cores), got 0")
    if threads_per_worker is not None:
        threads_per_worker = _check_int("threads_per_worker", threads_per_worker, minimum=1)
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name must be 1-100 letters, digits, '.', '_' or '-' starting with a "
                         f"letter or digit, got {name!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)} (workers in separate "
                         f"processes), got {backend!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict or None, got {config!r}")
    io.to_json(config)  # fail now, not after the computation, if config is not JSON-encodable

    cache: Path | None = None
    if cache_dir is not None:
        io._require_backend()
        cache = Path(cache_dir) / name
        cache.mkdir(parents=True, exist_ok=True)

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
    forbidden = set(axes) | set(RESERVED_NAMES)

    outcomes: list[dict | None] = [None] * len(tasks)
    counts = {"done": 0, "failed": 0, "cached": 0}
    bar = tqdm(total=len(tasks), desc=name, unit="task", disable=not progress)

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
            logger.warning("replicate %d of condition %s (seed %d) %s: %s", task.replicate,
                           task.condition, task.seed, how, outcome["failure"]["error"])
            logger.debug("traceback of replicate %d of condition %s:\n%s", task.replicate,
                         task.condition, outcome["failure"].get("traceback", ""))
        if "cache_error" in outcome:
            warnings.warn(f"replicate {task.replicate} of condition {task.condition} was "
                          f"computed but could not be cached: {outcome['cache_error']}",
                          CacheWarning, stacklevel=3)
        bar.set_postfix(done=counts["done"], failed=counts["failed"], cached=counts["cached"],
                        refresh=False)
        bar.update(1)

    try:
        todo = []
        problems: list[tuple[str, Path, str]] = []
        for task in tasks:
            stored = (_from_cache(task, cache, retry_failed, problems) if cache is not None
                      else None)
            if stored is None:
                todo.append(task)
            else:
                record(stored)
        _warn_cache_problems(problems)

        if todo:
            workers = 1 if n_jobs == 1 else min(joblib.effective_n_jobs(n_jobs), len(todo))
            threads = threads_per_worker or max(1, joblib.cpu_count() // workers)
            if n_jobs == 1:
                for task in todo:
                    record(_run_task(fn, task, threads, forbidden, cache))
            else:
                pool_error = _run_parallel(fn, todo, threads, forbidden, cache, workers,
                                           backend, record)
                for task in todo:
                    if outcomes[task.index] is None:  # the worker pool broke down
                        record({"index": task.index, "failure": _failure_record(
                            task, f"not run: the worker pool stopped before this replicate "
                            f"finished ({pool_error})", "")})
    finally:
        bar.close()

    assert all(o is not None for o in outcomes)
    ds = _assemble(outcomes, axes, n_replicates)
    n_failed = int(ds["failed"].sum())
    ds.attrs = {**ds.attrs, **io.provenance(config, seed), "study": name,
                "grid": json.dumps(axes), "n_replicates": n_replicates, "n_failed": n_failed}
    if n_failed:
        logger.warning("study %s: %d of %d replicates failed", name, n_failed, len(tasks))
    return ds


def _run_parallel(fn: Callable, todo: list[_Task], threads: int, forbidden: set[str],
                  cache: Path | None, workers: int, backend: str,
                  record: Callable[[dict], None]) -> str | None:
    """Run tasks in joblib workers, recording each outcome as it arrives.

    If the pool itself fails (a worker killed, a lost cluster, fn not picklable), the error is
    logged and returned, and the tasks that did not report stay unrecorded; those that did are
    kept. Returns None if the pool ran to the end."""
    options: dict[str, Any] = {"backend": backend}
    if backend == "loky":
        options["inner_max_num_threads"] = threads  # BLAS/OpenMP threads of each worker
    try:
        with joblib.parallel_config(**options):
            parallel = joblib.Parallel(n_jobs=workers, return_as="generator_unordered")
            for outcome in parallel(joblib.delayed(_run_task)(fn, task, threads, forbidden, cache)
                                    for task in todo):
                record(outcome)
    except Exception as exc:
        logger.error("the %s worker pool failed (%s: %s); replicates not yet finished are "
                     "marked as failed and not recorded in the cache", backend,
                     type(exc).__name__, exc)
        return f"{type(exc).__name__}: {exc}"
    return None
