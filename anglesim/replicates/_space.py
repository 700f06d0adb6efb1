"""Free space: a study stops before computing what its cache's disk cannot hold."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

SPACE_MARGIN = 1.25
"""Free space needed: this many times the expected size of the files still to be written."""


class CacheFullError(OSError):
    """The cache cannot take the study's files (a full disk, a failed write): the study stops,
    keeping every replicate already cached. ``filename`` names the folder or file."""


def expected_file_bytes(folder: Path) -> int | None:
    """The size of one replicate's file: the largest cached ``.nc`` file in ``folder`` (None
    if there is none yet)."""
    sizes = []
    for path in folder.glob("*.nc"):
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            pass
    return max(sizes) if sizes else None


def check_space(folder: Path, n_files: int) -> None:
    """Refuse to compute ``n_files`` more replicates when the disk cannot hold their files.

    The expected size is :data:`SPACE_MARGIN` × ``n_files`` × the largest cached file in
    ``folder`` (nothing is checked before the first file exists, beyond the cache's write
    test).

    Raises:
        CacheFullError: one line naming the folder, the space needed and the space free.
    """
    per_file = expected_file_bytes(folder)
    if per_file is None or n_files <= 0:
        return
    needed = int(SPACE_MARGIN * per_file * n_files)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CacheFullError(errno.ENOSPC, f"not enough free space in {folder} for the "
                             f"{n_files} replicate(s) still to compute: about "
                             f"{megabytes(needed)} needed ({megabytes(per_file)} per file), "
                             f"{megabytes(free)} free; the replicates already cached are "
                             f"kept, free space and rerun to resume", str(folder))


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
