"""Probe results: what the last check of each integration found.

Probes run through the sidecar with each kind's real client library (adapters issue);
this book only records their outcomes for ``/health``, filters, metrics and events.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["HealthState", "ProbeBook", "ProbeResult"]

HealthState = Literal["healthy", "unhealthy", "unknown"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    step: str
    detail: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 2),
            "step": self.step,
            "detail": self.detail,
            "at": self.at.isoformat(),
        }


class ProbeBook:
    def __init__(self) -> None:
        self._last: dict[str, ProbeResult] = {}
        # Set by the prober, which applies the healthy/unhealthy thresholds; without it the
        # state follows the last result.
        self._state: dict[str, HealthState] = {}

    def record(
        self, integration_id: str, result: ProbeResult, state: HealthState | None = None
    ) -> None:
        self._last[integration_id] = result
        if state is not None:
            self._state[integration_id] = state

    def last(self, integration_id: str) -> ProbeResult | None:
        return self._last.get(integration_id)

    def forget(self, integration_id: str) -> None:
        self._last.pop(integration_id, None)
        self._state.pop(integration_id, None)

    def state_of(self, integration_id: str) -> HealthState:
        if integration_id in self._state:
            return self._state[integration_id]
        result = self._last.get(integration_id)
        if result is None:
            return "unknown"
        return "healthy" if result.ok else "unhealthy"
