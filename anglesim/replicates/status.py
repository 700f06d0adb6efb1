"""What a study's cache holds, without running anything (:func:`study_status`)."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assemble import _failure_entries
from .cache import _from_cache, _temp_files
from .grid import _plan, _validated, _validated_keys


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


def study_status(
    grid: Mapping[str, Sequence],
    n_replicates: int,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str = "study",
    config: Mapping[str, Any] | None = None,
    code_version: str | None = None,
    pair_axes: Sequence[str] = (),
) -> StudyStatus:
    """Which replicates of a study are cached, failed or missing; runs and changes nothing.

    The arguments are those of :func:`run_study` (``fn`` is not needed): a replicate counts as
    cached or failed only if its file matches this config, seed, condition, code_version and
    anglesim version, exactly as :func:`run_study` would decide.

    Raises:
        ValueError: for invalid arguments, as :func:`run_study`.
    """
    axes, n_replicates, seed = _validated(len, grid, n_replicates, seed, name, config)
    code_version, pair = _validated_keys(axes, code_version, pair_axes)
    tasks = _plan(axes, n_replicates, seed, config, code_version, pair)
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

