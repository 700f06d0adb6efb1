"""Per-replicate locks: which run is computing a replicate of a shared cache."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Lock:
    """A held lock: an open file with an exclusive ``flock`` on it. The kernel releases it
    when the holding process ends, even by ``kill -9``, so a lock is never stale."""

    path: Path
    fd: int

    @classmethod
    def try_acquire(cls, path: Path) -> Lock | None:
        """Take the lock at ``path`` without waiting (writing this run's pid and host into
        it), or None if another process holds it."""
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
        return cls(path, fd)

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file says (e.g. ``pid 123 on host``)."""
    try:
        return path.read_text(encoding="utf-8").strip() or "another run"
    except OSError:
        return "another run"
