"""Probe results: what the last check of each integration found.

Probes run through the sidecar with each kind's real client library (adapters issue);
this book only records their outcomes for ``/health``, filters, metrics and events.
"""

from __future__ import annotations

from adapters.probes.result import HealthState, ProbeResult

__all__ = ["ProbeBook"]


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
