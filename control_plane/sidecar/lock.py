"""One supervisor per Envoy data directory, enforced with ``flock`` on ``envoy.lock``.

Two supervisors on one data directory would fight over one Envoy: each would take the
other's Envoy for one a crashed run left behind (the pid file names it) and adopt or replace
it. So the second :meth:`~.supervisor.EnvoySupervisor.start` fails instead. An ``flock``
rather than a lock file checked for existence: the kernel releases it when the holder's
process dies, even by SIGKILL, so a crashed control plane leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

__all__ = ["DataDirLock"]


class DataDirLock:
    """An exclusive, non-blocking ``flock`` on *path*, held from acquire() to release()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the lock (a no-op when held); RuntimeError when another process holds it."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(
                f"another Envoy supervisor is running on {self.path.parent}"
            ) from None
        except BaseException:
            lock.close()
            raise
        self._file = lock

    def release(self) -> None:
        lock, self._file = self._file, None
        if lock is not None:
            lock.close()  # closing the only descriptor releases the flock
