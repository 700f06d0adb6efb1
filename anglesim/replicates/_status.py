"""What a study's cache holds, without running anything (:func:`study_status`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._assemble import failure_entries
from ._cache import CacheProblems, ReplicateCache
from ._grid import StudySpec


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
    spec = StudySpec.checked(grid, n_replicates, seed, name, config, code_version, pair_axes)
    tasks = spec.tasks()
    folder = Path(cache_dir) / name if cache_dir is not None else None
    status = StudyStatus(name, folder, len(tasks))
    if folder is None or not folder.is_dir():
        status.missing = [(t.condition, t.replicate) for t in tasks]
        return status
    cache = ReplicateCache(folder)
    problems = CacheProblems()
    for task in tasks:
        stored = cache.load(task, problems, inspect=True)
        if stored is None:
            status.missing.append((task.condition, task.replicate))
        elif stored.failed:
            status.failed.extend(failure_entries([stored]))
        else:
            status.cached.append((task.condition, task.replicate))
    status.problems = [(kind, path.name, reason) for kind, path, reason in problems.found]
    status.temp_files = len(cache.temp_files())
    return status
