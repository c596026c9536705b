"""``integration.rate_limit_unavailable`` / ``_available``: the rate-limit service of a
``scope: global`` quota stopped (or resumed) answering an integration's Envoy.

Read from Envoy's ratelimit filter counters ``cluster.<id>.ratelimit.error`` (no answer:
service or Redis down, timeout) and ``...failure_mode_allowed`` (of those, let through
because the integration fails open). Unavailable when ``error`` grew since the previous
sample; available again when it stops growing while ``ok`` or ``over_limit`` grow (the
service answered). Pure: stats in, ``(event_type, data)`` out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from control_plane.model import Integration

__all__ = ["RateLimitServiceTracker"]

_COUNTERS = ("error", "failure_mode_allowed", "ok", "over_limit")


class RateLimitServiceTracker:
    def __init__(self) -> None:
        self._last: dict[str, dict[str, float]] = {}
        self._down: set[str] = set()
        self._primed = False

    def observe(
        self, stats: Mapping[str, float], items: Iterable[Integration]
    ) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        seen = set()
        for item in items:
            rl = item.policies.rate_limit
            if rl is None or rl.scope != "global":
                continue
            now = {c: stats.get(f"cluster.{item.id}.ratelimit.{c}") for c in _COUNTERS}
            if now["error"] is None and now["ok"] is None:
                continue  # the filter has not counted anything yet
            values = {c: float(v or 0) for c, v in now.items()}
            seen.add(item.id)
            # On the very first sample the counters are history from before we watched; a
            # counter that appears later belongs to a filter that began at 0 (its first
            # errors are news: the watcher may first see them in the very sample they grew).
            last = self._last.get(item.id) or (
                values if not self._primed else dict.fromkeys(values, 0.0)
            )
            # Counters only grow; a smaller value means Envoy restarted and began at 0.
            delta = {c: v - last[c] if v >= last[c] else v for c, v in values.items()}
            self._last[item.id] = values
            data = {
                "id": item.id,
                "failure_mode": rl.failure_mode,
                "errors": int(delta["error"]),
                "allowed_unchecked": int(delta["failure_mode_allowed"]),
                "totals": {c: int(v) for c, v in values.items()},
            }
            if delta["error"] > 0 and item.id not in self._down:
                self._down.add(item.id)
                out.append(("integration.rate_limit_unavailable", data))
            elif (
                item.id in self._down
                and delta["error"] == 0
                and delta["ok"] + delta["over_limit"] > 0
            ):
                self._down.discard(item.id)
                out.append(("integration.rate_limit_available", data))
        for gone in set(self._last) - seen:
            self._last.pop(gone, None)
            self._down.discard(gone)
        self._primed = True
        return out
