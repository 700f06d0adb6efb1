"""The replicate cache: one study's folder of finished replicates, as one store object.

Per study, one folder ``<cache_dir>/<name>/`` holding, per (condition, replicate) task:

* ``<condition_key>__r<replicate>.nc`` — the finished replicate (written by
  :func:`anglesim.io.save_dataset`: temporary name, fsync, rename; checksummed), with the hash
  of everything that determined it in the attribute :data:`CACHE_HASH_ATTR`;
* ``<condition_key>__r<replicate>.failed.json`` — the record of a failed replicate (written
  by :func:`anglesim.io.write_text_atomic`);
* ``<file>.corrupt`` — an unusable file moved aside (quarantined), never overwritten;
* ``.*.tmp`` — a write in progress (or left by a killed run; removed after
  :data:`STALE_TEMP_SECONDS`);
* ``.locks/<condition_key>__r<replicate>.lock`` — held by the run computing that replicate
  (:class:`~._locks.Lock`).

A file is used only if its checksum (version :data:`anglesim.io.CHECKSUM_VERSION`, covering
data, coordinates and attributes) verifies, its :data:`CACHE_HASH_ATTR` equals the task's hash
of config, condition, replicate, seeds and (when the study declares one) code_version, and it
was made by this anglesim version.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from .. import io
from ._grid import Task
from ._locks import Lock, holder
from ._log import StudyLog, logger, warn_caller
from ._outcome import CacheError, Failure, Outcome
from ._space import check_space

CACHE_HASH_ATTR = "cache_config_hash"
"""Attribute of a cached replicate file holding the hash of what produced it."""

CACHE_CODE_ATTR = "cache_code_version"
"""Attribute of a cached replicate file holding the study's code_version (when declared), so
that a file made by other code is reported as such."""

LOCK_DIR = ".locks"
"""Subfolder of a study's cache folder holding one lock file per replicate being computed."""

WRITE_TEST_BYTES = 1 << 16
"""Bytes written (and flushed) when opening a cache folder: an empty file needs no space, so
an empty test file would pass on a full disk."""

STALE_TEMP_SECONDS = 600.0
"""Temporary files older than this in a study's cache folder are left over from a killed run
and are removed when the study starts (a replicate's write takes milliseconds)."""

CACHE_BACKEND_ATTR = "computed_by"
"""Attribute of a cached replicate file naming the backend that computed it ("this process",
"loky", "dask", "slurm")."""

CACHE_JOB_ATTR = "slurm_job_id"
"""Attribute of a cached replicate file holding the Slurm job that computed it (when it ran
inside one)."""

CODE_CHANGED = "the replicate code changed"
"""How a stale reason begins when the study's code_version differs from the file's."""


class CacheWarning(UserWarning):
    """A cached replicate or failure record could not be used and is being recomputed."""


def made_by(attrs: dict) -> dict[str, str]:
    """Where a cached replicate was computed: its file's ``git_rev``, ``cpu``, ``created``
    and ``backend`` (``"not recorded"`` for files older than the attribute) and its Slurm
    job (``slurm_job``, ``""`` if none)."""
    out = {key: str(attrs.get(key, "not recorded")) for key in ("git_rev", "cpu", "created")}
    out["backend"] = str(attrs.get(CACHE_BACKEND_ATTR, "not recorded"))
    out["slurm_job"] = str(attrs.get(CACHE_JOB_ATTR, ""))
    return out


@dataclass
class CacheProblems:
    """Cached files found unusable while reading: ``(kind, path, reason)``, kind ``"corrupt"``
    (unreadable, truncated, checksum mismatch, not an anglesim file) or ``"stale"`` (made by
    another config, seed, condition, code_version or anglesim version, or an older
    checksum)."""

    found: list[tuple[str, Path, str]] = field(default_factory=list)

    def add(self, kind: str, path: Path, reason: str) -> None:
        self.found.append((kind, path, reason))

    def report(self, log: StudyLog, shown: int = 5) -> None:
        """One CacheWarning (and log line) per corrupt file; one for all stale files (a
        changed config makes every file stale), naming the first few, and one for files of
        another code_version; every stale file in the log. Forgets what it reported."""
        changed = [(p, r) for k, p, r in self.found if k == "stale" and r.startswith(CODE_CHANGED)]
        stale = [(p, r) for k, p, r in self.found
                 if k == "stale" and not r.startswith(CODE_CHANGED)]
        if changed:
            _warn(log, f"{CODE_CHANGED}: {len(changed)} cached file(s) in {changed[0][0].parent} "
                       f"were made by another code_version and are recomputed "
                       f"({changed[0][1][len(CODE_CHANGED) + 2:-1]})", changed)
        for kind, path, reason in self.found:
            if kind == "corrupt":
                _warn(log, f"cached file {path} cannot be used and its replicate is recomputed "
                           f"(the file is kept as {path.name}.corrupt): {reason}")
        if stale:
            listed = "; ".join(f"{path.name} ({reason})" for path, reason in stale[:shown])
            more = f"; and {len(stale) - shown} more" if len(stale) > shown else ""
            _warn(log, f"{len(stale)} cached file(s) in {stale[0][0].parent} were made by "
                       f"another config, seed, condition or anglesim version and are "
                       f"recomputed: {listed}{more}", stale)
        self.found.clear()


def _warn(log: StudyLog, message: str, listed: Sequence[tuple[Path, str]] = ()) -> None:
    log.warning("%s", message)
    for path, reason in listed:
        log.info("stale: %s (%s)", path.name, reason)
    warn_caller(message, CacheWarning)


def quarantine(path: Path) -> Path | None:
    """Move an unusable cached file aside (``<file>.corrupt``) rather than overwrite it."""
    target = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target


class ReplicateCache:
    """The cache folder of one study (see the module docstring for its files).

    :meth:`load` gives a task's stored outcome if it may be used, :meth:`dump` writes one
    (atomically), :meth:`lock` takes a task's lock; :meth:`check_space`, :meth:`temp_files`
    and :meth:`remove_stale_temps` look after the folder. It is picklable (a folder name), so
    worker processes write their own results.
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str], name: str) -> ReplicateCache:
        """The cache of study ``name`` under ``cache_dir``, created if needed, after checking
        that files can be written there (a test file of :data:`WRITE_TEST_BYTES` is written,
        flushed to disk and removed).

        Raises:
            ValueError: naming ``cache_dir`` if it cannot be created or written to (a full
                disk included).
            ModuleNotFoundError: if h5py (needed for netCDF4) is missing.
        """
        io.require_backend()
        folder = Path(cache_dir) / name
        try:
            (folder / LOCK_DIR).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-",
                                             suffix=".tmp") as f:
                f.write(b"\0" * WRITE_TEST_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise ValueError(f"cache_dir {str(cache_dir)!r} is not writable: "
                             f"{exc.strerror or exc} ({folder})") from None
        return cls(folder)

    def __repr__(self) -> str:
        return f"ReplicateCache({str(self.folder)!r})"

    def data_path(self, task: Task) -> Path:
        return self.folder / f"{task.stem}.nc"

    def failed_path(self, task: Task) -> Path:
        return self.folder / f"{task.stem}.failed.json"

    # reading and writing ----------------------------------------------------------------------

    def load(self, task: Task, problems: CacheProblems, retry_failed: bool = False,
             inspect: bool = False) -> Outcome | None:
        """The stored outcome of ``task``, or None if it must be computed.

        A stored file that exists but cannot be used is added to ``problems``; a corrupt one
        is moved aside unless ``inspect`` (which changes nothing on disk). A recorded failure
        is returned unless ``retry_failed`` (and not ``inspect``).
        """
        data_path, failed_path = self.data_path(task), self.failed_path(task)
        if data_path.exists():
            try:
                ds, checksum_version = io.load_checked(data_path)
            except Exception as exc:
                problems.add("corrupt", data_path, f"{type(exc).__name__}: {exc}")
                if not inspect:
                    quarantine(data_path)
            else:
                reason = _stale_result(task, ds.attrs, checksum_version)
                if reason is None:
                    origin = made_by(ds.attrs)  # before the provenance is stripped
                    return Outcome(task.index, result=_strip_cache_attrs(ds), cached=True,
                                   made_by=origin)
                problems.add("stale", data_path, reason)
        if not failed_path.exists():
            return None
        try:
            record = json.loads(failed_path.read_text(encoding="utf-8"))
            failure = Failure.from_record(record, task)
        except (OSError, ValueError) as exc:
            problems.add("corrupt", failed_path, f"{type(exc).__name__}: {exc}")
            if not inspect:
                quarantine(failed_path)
            return None
        reason = _stale_record(task, record)
        if reason is not None:
            problems.add("stale", failed_path, reason)
            return None
        if retry_failed and not inspect:
            logger.info("retrying %s (recorded failure: %s)", failed_path.name, failure.error)
            return None
        return Outcome(task.index, failure=failure, cached=True)

    def stored_result(self, task: Task) -> Outcome | None:
        """``task``'s stored result if a valid one is there, else None; changes nothing on disk
        (a worker's check before computing: dask reruns a task whose worker died after
        storing it but before its outcome reached the study)."""
        if not self.data_path(task).exists():
            return None
        stored = self.load(task, CacheProblems(), inspect=True)
        return stored if stored is not None and stored.result is not None else None

    def dump(self, task: Task, outcome: Outcome) -> None:
        """Write ``outcome`` (its result or its failure) as ``task``'s file, removing the
        other kind; a failed write sets ``outcome.cache_error`` instead of raising."""
        from .. import __version__

        data_path, failed_path = self.data_path(task), self.failed_path(task)
        try:
            if outcome.result is not None:
                ds = outcome.result.copy(deep=False)
                ds.attrs = {**ds.attrs, CACHE_HASH_ATTR: task.config_hash}
                if task.code_version is not None:
                    ds.attrs[CACHE_CODE_ATTR] = task.code_version
                if outcome.backend is not None:
                    ds.attrs[CACHE_BACKEND_ATTR] = outcome.backend
                if outcome.slurm_job is not None:
                    ds.attrs[CACHE_JOB_ATTR] = outcome.slurm_job
                io.save_dataset(ds, data_path, config=task.key, seed=task.seed)
                failed_path.unlink(missing_ok=True)
            else:
                assert outcome.failure is not None
                record = {**outcome.failure.record(), "anglesim_version": __version__,
                          "code_version": task.code_version}
                io.write_text_atomic(failed_path, json.dumps(record, indent=1, sort_keys=True))
                data_path.unlink(missing_ok=True)
        except Exception as exc:
            outcome.cache_error = CacheError.of(
                exc, data_path if outcome.result is not None else failed_path)

    def written_since(self, task: Task, since: float) -> bool:
        """Whether ``task``'s result or failure file was written after ``since``
        (``time.time()``)."""
        for path in (self.data_path(task), self.failed_path(task)):
            try:
                if path.stat().st_mtime >= since - 1.0:
                    return True
            except OSError:
                pass
        return False

    def n_results(self) -> int:
        """How many replicate files the folder holds."""
        return sum(1 for _ in self.folder.glob("*.nc"))

    # locks ------------------------------------------------------------------------------------

    def lock(self, task: Task) -> Lock | None:
        """Take ``task``'s lock without waiting, or None if another run holds it."""
        return Lock.try_acquire(self.folder / LOCK_DIR / f"{task.stem}.lock")

    def holder(self, task: Task) -> str:
        """Who holds ``task``'s lock (e.g. ``pid 123 on host``)."""
        return holder(self.folder / LOCK_DIR / f"{task.stem}.lock")

    # the folder -------------------------------------------------------------------------------

    def check_space(self, n_files: int) -> None:
        """Raise :class:`CacheFullError` if the disk cannot hold ``n_files`` more files
        (:func:`~._space.check_space`)."""
        check_space(self.folder, n_files)

    def temp_files(self) -> list[Path]:
        return sorted(self.folder.glob(".*.tmp")) if self.folder.is_dir() else []

    def remove_stale_temps(self, log: StudyLog) -> None:
        """Remove temporary files a killed run left behind (older than
        :data:`STALE_TEMP_SECONDS`)."""
        now = time.time()
        for path in self.temp_files():
            try:
                if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                    path.unlink()
                    log.info("removed %s, left over from an interrupted write", path.name)
            except OSError:
                pass


def _strip_cache_attrs(ds: xr.Dataset) -> xr.Dataset:
    ds.attrs = {k: v for k, v in ds.attrs.items()
                if k not in io.PROVENANCE_KEYS and k not in (CACHE_HASH_ATTR, CACHE_CODE_ATTR,
                                                             CACHE_BACKEND_ATTR, CACHE_JOB_ATTR)
                and (k, v) != ("title", io.DEFAULT_TITLE)}
    return ds


def _stale_reason(task: Task, found_hash: Any, found_code: Any) -> str:
    if found_code != task.code_version:
        return (f"{CODE_CHANGED} (code_version {found_code!r}, this run's is "
                f"{task.code_version!r})")
    return f"config hash {found_hash!r}, this run's is {task.config_hash!r}"


def _stale_result(task: Task, attrs: dict, checksum_version: int) -> str | None:
    """Why a readable cached result may not be used for ``task`` (None: it may)."""
    from .. import __version__

    if checksum_version < io.CHECKSUM_VERSION:
        return (f"written with checksum version {checksum_version}, which does not cover "
                f"attributes; this anglesim writes version {io.CHECKSUM_VERSION}")
    if attrs.get(CACHE_HASH_ATTR) != task.config_hash:
        return _stale_reason(task, attrs.get(CACHE_HASH_ATTR), attrs.get(CACHE_CODE_ATTR))
    if attrs.get("anglesim_version") != __version__:
        return f"made by anglesim {attrs.get('anglesim_version')!r}, this is {__version__!r}"
    return None


def _stale_record(task: Task, record: dict) -> str | None:
    """Why a failure record may not be used for ``task`` (None: it may)."""
    from .. import __version__

    if record.get("config_hash") != task.config_hash:
        return _stale_reason(task, record.get("config_hash"), record.get("code_version"))
    if record.get("anglesim_version") != __version__:
        return (f"made by anglesim {record.get('anglesim_version')!r}, this is "
                f"{__version__!r}")
    return None
