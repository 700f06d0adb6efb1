"""What one replicate gave: a typed outcome (a result or a failure), and failure records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from ._grid import Task


@dataclass(frozen=True)
class Failure:
    """A failed replicate: where (condition, replicate, seed), the error (``"<Type>:
    <message>"``) and its traceback without machine paths. ``config_hash`` ties a recorded
    failure to the cache key it was made under."""

    condition: dict
    condition_index: int
    replicate: int
    seed: int
    error: str
    traceback: str = ""
    config_hash: str = ""

    @classmethod
    def of(cls, task: Task, error: str, traceback_text: str = "") -> Failure:
        """The failure of ``task`` with this error and traceback (machine paths removed)."""
        return cls(task.condition, task.condition_index, task.replicate, task.seed, error,
                   without_machine_paths(traceback_text), task.config_hash)

    @classmethod
    def from_record(cls, record: dict[str, Any], task: Task) -> Failure:
        """A failure read back from its cache record (:meth:`record`), for ``task``.

        Raises:
            ValueError: if ``record`` is not a failure record (no string ``error``).
        """
        if not isinstance(record, dict) or not isinstance(record.get("error"), str):
            raise ValueError("not a failure record (no 'error' entry)")
        return cls(task.condition, task.condition_index, task.replicate, task.seed,
                   record["error"],
                   str(record.get("traceback", "")), str(record.get("config_hash", "")))

    def record(self) -> dict[str, Any]:
        """The JSON record of the cache's ``.failed.json`` file (without the versions the
        cache adds)."""
        return {"condition": self.condition, "condition_index": self.condition_index,
                "replicate": self.replicate, "seed": self.seed, "error": self.error,
                "traceback": self.traceback, "config_hash": self.config_hash}

    def entry(self) -> dict[str, Any]:
        """The row of the Dataset's failure table (:func:`failure_table`)."""
        return {"condition": dict(self.condition), "replicate": int(self.replicate),
                "seed": int(self.seed), "error": self.error, "traceback": self.traceback}


@dataclass(frozen=True)
class CacheError:
    """Why a computed outcome could not be written to the cache: ``message`` (``"<Type>:
    <text>"``), the file, and for an OSError (a full disk, a lost folder) its errno and
    reason, which stop the study."""

    message: str
    path: str
    errno: int | None = None
    strerror: str | None = None

    @property
    def is_os_error(self) -> bool:
        return self.strerror is not None

    @classmethod
    def of(cls, exc: Exception, path: Path) -> CacheError:
        if isinstance(exc, OSError):
            return cls(f"{type(exc).__name__}: {exc}", str(path), exc.errno,
                       exc.strerror or str(exc))
        return cls(f"{type(exc).__name__}: {exc}", str(path))


@dataclass
class Outcome:
    """What one task gave, in whichever process computed it: exactly one of ``result`` (a
    Dataset) and ``failure``.

    ``cached``: read from the cache, not computed by this run; ``made_by``: where a cached
    result was computed (:func:`~._cache.made_by`); ``backend`` and ``slurm_job``: where
    this run computed it (the ``SLURM_JOB_ID`` of the worker's job, if any); ``unstored``: a
    failure the manager records because no worker could (its worker died); ``cache_error``:
    the result could not be written to the cache; ``fn_seconds``/``task_seconds``: the time
    in ``fn`` and in the whole task (settings, fn, checks, writing the cache file).
    """

    index: int
    result: xr.Dataset | None = None
    failure: Failure | None = None
    cached: bool = False
    made_by: dict[str, str] | None = None
    backend: str | None = None
    slurm_job: str | None = None
    unstored: bool = False
    cache_error: CacheError | None = None
    fn_seconds: float | None = None
    task_seconds: float | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def computed(self) -> bool:
        """Computed by this run (not read from the cache), with its times."""
        return self.fn_seconds is not None


TRACEBACK_FILE = re.compile(r'File "([^"]+)"')
PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent


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
        if resolved.is_relative_to(PACKAGE_PARENT / "anglesim"):
            # only anglesim's own files: a virtual environment or tests beside the package
            # (a clone's .venv) are other files, named by their last two parts
            return f'File "{resolved.relative_to(PACKAGE_PARENT).as_posix()}"'
        return f'File "…/{"/".join(path.parts[-2:])}"'

    return TRACEBACK_FILE.sub(short, traceback_text)
