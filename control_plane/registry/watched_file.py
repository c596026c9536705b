"""A configuration file in force: parsed at start (an invalid file stops the start), then
re-read when its content changes; an invalid new file is logged and the last good value
stays. Used by the grants and the workloads files."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from control_plane.problems import RegistryError

__all__ = ["WatchedFile"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """``parse(path)`` of one file; ``name`` ("grants", "workloads") words the log lines
    and ``size`` counts what a reload brought in."""

    def __init__(
        self, path: Path, parse: Callable[[Path], T], name: str, size: Callable[[T], int]
    ) -> None:
        self.path = path
        self._parse, self._name, self._size = parse, name, size
        self.error: RegistryError | None = None
        self._digest: str | None = None

    def _raw(self) -> bytes:
        return self.path.read_bytes() if self.path.exists() else b""

    def load(self) -> T:
        """Parse the file now; raises :class:`RegistryError` when it is invalid."""
        raw = self._raw()
        value = self._parse(self.path)
        self._digest = hashlib.sha256(raw).hexdigest()
        return value

    def reload(self) -> T | None:
        """The new value when the file changed and is valid, else None (logged)."""
        try:
            raw = self._raw()
        except OSError as exc:
            log.error(f"cannot read the {self._name} file", extra={"error": exc.strerror})
            return None
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest:
            return None
        self._digest = digest
        try:
            value = self._parse(self.path)
        except RegistryError as exc:
            self.error = exc
            log.error(
                f"{self._name} file rejected; the last good {self._name} stay in force",
                extra={"file": str(self.path), "problems": [p.render() for p in exc.problems]},
            )
            return None
        self.error = None
        log.info(
            f"{self._name} file reloaded",
            extra={"file": str(self.path), self._name: self._size(value)},
        )
        return value
