"""The last few events of each integration, as the bus delivered them, for the status page.

A bounded ring per integration (keyed by the envelope's ``subject``, else ``data.id``),
fed by one bus subscription to ``integration.*``. Only the envelope's own fields are kept;
events never carry secret values (the publishers put references and counts in them).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from control_plane.events.bus import EventBus, Message

__all__ = ["RecentEvents"]

log = logging.getLogger(__name__)

# Each integration's ring, and how many integrations are remembered at most.
PER_INTEGRATION = 20
MAX_INTEGRATIONS = 5_000


class RecentEvents:
    def __init__(self, per_integration: int = PER_INTEGRATION) -> None:
        self.per_integration = per_integration
        self._rings: dict[str, deque[dict[str, Any]]] = {}
        #: Called with the integration id after each recorded event (the status page's
        #: live feed refreshes sooner than its next tick).
        self.listeners: list[Callable[[str], None]] = []

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(["integration.*"], self.on_message)

    async def on_message(self, message: Message) -> None:
        try:
            envelope = message.json()
        except ValueError:
            return
        if isinstance(envelope, dict):
            self.record(envelope)

    def record(self, envelope: dict[str, Any]) -> None:
        data = envelope.get("data")
        ident = envelope.get("subject") or (data.get("id") if isinstance(data, dict) else None)
        if not isinstance(ident, str) or not ident:
            return
        ring = self._rings.get(ident)
        if ring is None:
            if len(self._rings) >= MAX_INTEGRATIONS:
                self._rings.pop(next(iter(self._rings)))  # the longest-remembered goes
            ring = self._rings[ident] = deque(maxlen=self.per_integration)
        ring.append(
            {
                "id": envelope.get("id"),
                "type": envelope.get("type"),
                "time": envelope.get("time"),
                "tenant": envelope.get("tenant"),
                "data": data,
            }
        )
        for listener in self.listeners:
            try:
                listener(ident)
            except Exception:
                log.exception("recent-events listener failed")

    def for_integration(self, ident: str) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self._rings.get(ident, ())))
