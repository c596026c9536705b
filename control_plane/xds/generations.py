"""Small persisted per-integration counters the translation depends on (breaker reset,
cache clear), so a restarted control plane produces the very same snapshot version."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["Generations"]

log = logging.getLogger(__name__)


class Generations:
    """Small persisted counters: ``cluster`` (breaker reset) and ``cache`` (cache clear)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cluster: dict[str, int] = {}
        self.cache: dict[str, int] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                self.cluster = {str(k): int(v) for k, v in raw.get("cluster", {}).items()}
                self.cache = {str(k): int(v) for k, v in raw.get("cache", {}).items()}
            except (ValueError, AttributeError):
                log.warning(
                    "generations file unreadable; starting from 0", extra={"file": str(path)}
                )

    def bump(self, table: dict[str, int], integration_id: str) -> int:
        table[integration_id] = table.get(integration_id, 0) + 1
        self._save()
        return table[integration_id]

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cluster": self.cluster, "cache": self.cache}, sort_keys=True))
        os.replace(tmp, self.path)  # atomic: never a half-written file
