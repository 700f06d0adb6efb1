"""The replicate cache format, in one place.

Per study, one folder ``<cache_dir>/<name>/`` holding, per (condition, replicate) task:

* ``<condition_key>__r<replicate>.nc`` — the finished replicate (written by
  :func:`anglesim.io.save_dataset`: temporary name, fsync, rename; checksummed), with the hash
  of everything that determined it in the attribute :data:`CACHE_HASH_ATTR`;
* ``<condition_key>__r<replicate>.failed.json`` — the record of a failed replicate;
* ``<file>.corrupt`` — an unusable file moved aside (quarantined), never overwritten;
* ``.*.tmp`` — a write in progress (or left by a killed run; removed after
  :data:`STALE_TEMP_SECONDS`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import xarray as xr

from .. import io
from .grid import _Task
from .log import _StudyLog, logger

CACHE_HASH_ATTR = "cache_config_hash"
"""Attribute of a cached replicate file holding the hash of what produced it."""

STALE_TEMP_SECONDS = 600.0
"""Temporary files older than this in a study's cache folder are left over from a killed run
and are removed when the study starts (a replicate's write takes milliseconds)."""

class CacheWarning(UserWarning):
    """A cached replicate or failure record could not be used and is being recomputed."""


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
    from .. import __version__

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

