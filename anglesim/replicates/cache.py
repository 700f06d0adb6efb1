"""The replicate cache format, in one place.

Per study, one folder ``<cache_dir>/<name>/`` holding, per (condition, replicate) task:

* ``<condition_key>__r<replicate>.nc`` — the finished replicate (written by
  :func:`anglesim.io.save_dataset`: temporary name, fsync, rename; checksummed), with the hash
  of everything that determined it in the attribute :data:`CACHE_HASH_ATTR`;
* ``<condition_key>__r<replicate>.failed.json`` — the record of a failed replicate;
* ``<file>.corrupt`` — an unusable file moved aside (quarantined), never overwritten;
* ``.*.tmp`` — a write in progress (or left by a killed run; removed after
  :data:`STALE_TEMP_SECONDS`);
* ``.locks/<condition_key>__r<replicate>.lock`` — held (``fcntl.flock``) by the run computing
  that replicate, with its pid and host inside; the kernel releases it when that run ends, even
  by ``kill -9``, so a lock is never stale.

A file is used only if its checksum (version :data:`anglesim.io.CHECKSUM_VERSION`, covering
data, coordinates and attributes) verifies and its :data:`CACHE_HASH_ATTR` equals the task's
hash of config, condition, replicate, seeds and (when the study declares one) code_version;
and it was made by this anglesim version.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from .. import io
from .grid import _Task
from .log import _StudyLog, logger

CACHE_HASH_ATTR = "cache_config_hash"
"""Attribute of a cached replicate file holding the hash of what produced it."""

CACHE_CODE_ATTR = "cache_code_version"
"""Attribute of a cached replicate file holding the study's code_version (when declared), so
that a file made by other code is reported as such."""

LOCK_DIR = ".locks"
"""Subfolder of a study's cache folder holding one lock file per replicate being computed."""

SPACE_MARGIN = 1.25
"""Free space needed: this many times the expected size of the files still to be written."""

WRITE_TEST_BYTES = 1 << 16
"""Bytes written (and flushed) when checking a cache folder: an empty file needs no space, so
an empty test file would pass on a full disk."""

STALE_TEMP_SECONDS = 600.0
"""Temporary files older than this in a study's cache folder are left over from a killed run
and are removed when the study starts (a replicate's write takes milliseconds)."""

class CacheWarning(UserWarning):
    """A cached replicate or failure record could not be used and is being recomputed."""


def _failure_record(task: _Task, error: str, tb: str) -> dict:
    return {"condition": task.condition, "condition_index": task.condition_index,
            "replicate": task.replicate, "seed": task.seed, "error": error,
            "traceback": without_machine_paths(tb), "config_hash": task.config_hash}


_TRACEBACK_FILE = re.compile(r'File "([^"]+)"')
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent


def without_machine_paths(traceback_text: str) -> str:
    """A traceback whose file names carry no machine paths: anglesim's own files as
    ``anglesim/…``, any other file as ``…/<parent>/<name>`` (e.g. ``…/torch/nn/...`` becomes
    ``…/modules/linear.py``), so failure tables in saved Datasets name no folders of this
    machine."""
    def short(match: re.Match) -> str:
        path = Path(match.group(1))
        if not path.is_absolute():
            return match.group(0)
        resolved = path.resolve()
        if resolved.is_relative_to(_PACKAGE_PARENT / "anglesim"):
            # only anglesim's own files: a virtual environment or tests beside the package
            # (a clone's .venv) are other files, named by their last two parts
            return f'File "{resolved.relative_to(_PACKAGE_PARENT).as_posix()}"'
        return f'File "…/{"/".join(path.parts[-2:])}"'

    return _TRACEBACK_FILE.sub(short, traceback_text)


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


def _store(cache: Path, task: _Task, outcome: dict) -> None:
    """Write ``outcome`` (its ``result`` or its ``failure``) as ``task``'s cache file, removing
    the other kind; a failed write sets ``cache_error``, ``cache_error_path`` and, for an
    OSError, ``cache_errno`` in ``outcome`` instead of raising."""
    from .. import __version__

    data_path = cache / f"{task.stem}.nc"
    failed_path = cache / f"{task.stem}.failed.json"
    try:
        if "result" in outcome:
            ds = outcome["result"].copy(deep=False)
            ds.attrs = {**ds.attrs, CACHE_HASH_ATTR: task.config_hash}
            if task.code_version is not None:
                ds.attrs[CACHE_CODE_ATTR] = task.code_version
            io.save_dataset(ds, data_path, config=task.key, seed=task.seed)
            failed_path.unlink(missing_ok=True)
        else:
            record = {**outcome["failure"], "anglesim_version": __version__,
                      "code_version": task.code_version}
            _write_text_atomic(failed_path, json.dumps(record, indent=1, sort_keys=True,
                                                       default=io._json_default))
            data_path.unlink(missing_ok=True)
    except Exception as exc:
        outcome["cache_error"] = f"{type(exc).__name__}: {exc}"
        outcome["cache_error_path"] = str(data_path if "result" in outcome else failed_path)
        if isinstance(exc, OSError):
            outcome["cache_errno"] = exc.errno
            outcome["cache_strerror"] = exc.strerror or str(exc)


MADE_BY_ATTR = "replicates_made_by"
"""The Dataset attribute listing which code revision and CPU computed its replicates
(see :func:`made_by_summary`)."""


def _made_by(attrs: dict) -> dict:
    """Where a cached replicate was computed: its file's ``git_rev``, ``cpu`` and ``created``
    (``"not recorded"`` for files older than the attribute)."""
    return {key: str(attrs.get(key, "not recorded")) for key in ("git_rev", "cpu", "created")}


def made_by_summary(made_by: list[dict]) -> list[dict]:
    """Group the replicates' origins by (git revision, CPU): one entry per pair with the
    number of replicates and the first and last ``created`` time, in order of first use.

    A study resumed after a commit, or on another machine, holds replicates from more than
    one code revision or CPU model; the Dataset's own ``git_rev`` and ``cpu`` name only the
    assembly, so this list says what computed each part.
    """
    groups: dict[tuple[str, str], dict] = {}
    for origin in made_by:
        key = (origin["git_rev"], origin["cpu"])
        entry = groups.setdefault(key, {"git_rev": key[0], "cpu": key[1], "replicates": 0,
                                        "first": origin["created"], "last": origin["created"]})
        entry["replicates"] += 1
        entry["first"] = min(entry["first"], origin["created"])
        entry["last"] = max(entry["last"], origin["created"])
    return list(groups.values())


def _strip_cache_attrs(ds: xr.Dataset) -> xr.Dataset:
    ds.attrs = {k: v for k, v in ds.attrs.items()
                if k not in io.PROVENANCE_KEYS and k not in (CACHE_HASH_ATTR, CACHE_CODE_ATTR)
                and (k, v) != ("title", io.DEFAULT_TITLE)}
    return ds


CODE_CHANGED = "the replicate code changed"
"""How a stale reason begins when the study's code_version differs from the file's."""


def _stale_reason(task: _Task, found_hash: Any, found_code: Any) -> str:
    if found_code != task.code_version:
        return (f"{CODE_CHANGED} (code_version {found_code!r}, this run's is "
                f"{task.code_version!r})")
    return f"config hash {found_hash!r}, this run's is {task.config_hash!r}"


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
    an anglesim file) or ``"stale"`` (made by another config, seed, condition, code_version or
    anglesim version, or with an older checksum). Corrupt files are moved aside unless
    ``inspect`` (which changes nothing on disk).
    """
    from .. import __version__

    data_path = cache / f"{task.stem}.nc"
    failed_path = cache / f"{task.stem}.failed.json"
    if data_path.exists():
        try:
            ds, checksum_version = io.load_checked(data_path)
        except Exception as exc:
            problems.append(("corrupt", data_path, f"{type(exc).__name__}: {exc}"))
            if not inspect:
                _quarantine(data_path)
        else:
            found_hash = ds.attrs.get(CACHE_HASH_ATTR)
            found_version = ds.attrs.get("anglesim_version")
            if checksum_version < io.CHECKSUM_VERSION:
                problems.append(("stale", data_path, f"written with checksum version "
                                 f"{checksum_version}, which does not cover attributes; this "
                                 f"anglesim writes version {io.CHECKSUM_VERSION}"))
            elif found_hash != task.config_hash:
                problems.append(("stale", data_path, _stale_reason(
                    task, found_hash, ds.attrs.get(CACHE_CODE_ATTR))))
            elif found_version != __version__:
                problems.append(("stale", data_path, f"made by anglesim {found_version!r}, "
                                 f"this is {__version__!r}"))
            else:
                made_by = _made_by(ds.attrs)
                return {"index": task.index, "result": _strip_cache_attrs(ds), "cached": True,
                        "made_by": made_by}
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
            problems.append(("stale", failed_path, _stale_reason(
                task, record.get("config_hash"), record.get("code_version"))))
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
    stale = [(path, reason) for kind, path, reason in problems if kind == "stale"
             and not reason.startswith(CODE_CHANGED)]
    changed = [(path, reason) for kind, path, reason in problems if kind == "stale"
               and reason.startswith(CODE_CHANGED)]
    if changed:
        message = (f"{CODE_CHANGED}: {len(changed)} cached file(s) in {changed[0][0].parent} "
                   f"were made by another code_version and are recomputed "
                   f"({changed[0][1][len(CODE_CHANGED) + 2:-1]})")
        _warn(log, message, changed)
    for kind, path, reason in problems:
        if kind == "corrupt":
            message = (f"cached file {path} cannot be used and its replicate is recomputed "
                       f"(the file is kept as {path.name}.corrupt): {reason}")
            _warn(log, message)
    if stale:
        listed = "; ".join(f"{path.name} ({reason})" for path, reason in stale[:shown])
        more = f"; and {len(stale) - shown} more" if len(stale) > shown else ""
        message = (f"{len(stale)} cached file(s) in {stale[0][0].parent} were made by another "
                   f"config, seed, condition or anglesim version and are recomputed: "
                   f"{listed}{more}")
        _warn(log, message, stale)


def _warn(log: _StudyLog, message: str, listed: Sequence[tuple[Path, str]] = ()) -> None:
    """``message`` as a log warning and a CacheWarning, with each ``listed`` stale file in the
    log; the warning names the caller of :func:`_report_cache_problems`'s caller."""
    log.warning("%s", message)
    for path, reason in listed:
        log.info("stale: %s (%s)", path.name, reason)
    warnings.warn(message, CacheWarning, stacklevel=4)


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
    """Create ``cache_dir/name`` and check that files can be written there (a test file of
    :data:`WRITE_TEST_BYTES` is written, flushed to disk and removed).

    Raises:
        ValueError: naming ``cache_dir`` if it cannot be created or written to (a full disk
            included).
    """
    cache = Path(cache_dir) / name
    try:
        (cache / LOCK_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, prefix=".write-test-", suffix=".tmp") as f:
            f.write(b"\0" * WRITE_TEST_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise ValueError(f"cache_dir {str(cache_dir)!r} is not writable: {exc.strerror or exc} "
                         f"({cache})") from None
    return cache



# --------------------------------------------------------------------------------------------
# free space


def _expected_file_bytes(cache: Path) -> int | None:
    """The size of one replicate's file: the largest cached ``.nc`` file of this study (None if
    there is none yet)."""
    sizes = []
    for path in cache.glob("*.nc"):
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            pass
    return max(sizes) if sizes else None


def _check_space(cache: Path, n_files: int) -> None:
    """Refuse to compute ``n_files`` more replicates when the disk cannot hold their files.

    The expected size is :data:`SPACE_MARGIN` × ``n_files`` × the largest cached file of the
    study (nothing is checked before the first file exists, beyond the write test of
    :func:`_prepare_cache`).

    Raises:
        CacheFullError: one line naming the folder, the space needed and the space free.
    """
    per_file = _expected_file_bytes(cache)
    if per_file is None or n_files <= 0:
        return
    needed = int(SPACE_MARGIN * per_file * n_files)
    free = shutil.disk_usage(cache).free
    if free < needed:
        raise CacheFullError(errno.ENOSPC, f"not enough free space in {cache} for the "
                             f"{n_files} replicate(s) still to compute: about "
                             f"{_mb(needed)} needed ({_mb(per_file)} per file), {_mb(free)} "
                             f"free; the replicates already cached are kept, free space and "
                             f"rerun to resume", str(cache))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


class CacheFullError(OSError):
    """The cache cannot take the study's files (a full disk, a failed write): the study stops,
    keeping every replicate already cached. ``filename`` names the folder or file."""


# --------------------------------------------------------------------------------------------
# locks


@dataclass
class _Lock:
    """A held per-replicate lock: an open file with an exclusive ``flock`` on it."""

    path: Path
    fd: int

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def _lock_path(cache: Path, task: _Task) -> Path:
    return cache / LOCK_DIR / f"{task.stem}.lock"


def _try_lock(cache: Path, task: _Task) -> _Lock | None:
    """Take ``task``'s lock without waiting (writing this run's pid and host into it), or None
    if another process holds it."""
    path = _lock_path(cache, task)
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    except OSError:
        pass  # the lock holds without its note
    return _Lock(path, fd)


def _holder(cache: Path, task: _Task) -> str:
    """Who holds ``task``'s lock, as its lock file says (e.g. ``pid 123 on host``)."""
    try:
        return _lock_path(cache, task).read_text(encoding="utf-8").strip() or "another run"
    except OSError:
        return "another run"
