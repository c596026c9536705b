"""Publishers of events that come from the data plane and the probes, not from mutations.

* ``integration.rate_limit_exceeded`` — deltas of Envoy's local rate limit counter
  ``<id>.http_local_rate_limit.rate_limited``, debounced per integration;
* ``integration.circuit_breaker_opened`` / ``_closed`` — transitions of the cluster's
  ``outlier_detection.ejections_active`` gauge and its ``circuit_breakers.default.*_open``
  gauges (Envoy sets those to 1 while a threshold is reached,
  https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats#circuit-breakers-statistics);
* ``integration.rate_limit_unavailable`` / ``_available`` — a global quota's rate-limit
  service stopped / resumed answering (``events/ratelimit_service.py``);
* ``integration.config_rejected`` — an Envoy NACK with its ``error_detail`` text;
* ``integration.health_check`` — a probe result.

The trackers are pure (stats in, event payloads out); :class:`EnvoyStatsWatcher` is the
I/O shell that polls Envoy's admin ``/stats`` and never dies on an unreachable Envoy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.probes.result import ProbeResult
from control_plane.events.ratelimit_service import RateLimitServiceTracker
from control_plane.model import Integration
from control_plane.xds.status import NackListener

__all__ = [
    "BreakerTracker",
    "EnvoyStatsWatcher",
    "HealthPublisher",
    "RateLimitTracker",
    "StatsSource",
    "nack_listener",
    "probe_correlation",
]

log = logging.getLogger(__name__)

StatsSource = Callable[[], Awaitable[Mapping[str, float]]]
Integrations = Callable[[], Iterable[Integration]]


class Emitter(Protocol):
    async def emit(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        tenant: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]: ...

    def emit_soon(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        tenant: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
    ) -> None: ...


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


@dataclass(slots=True)
class _Rate:
    total: float
    sampled_at: float
    pending: float = 0.0
    window_start: float = 0.0
    last_emit: float | None = None


class RateLimitTracker:
    """Turns samples of the cumulative ``rate_limited`` counter into debounced events.

    The first rejection after a quiet period is reported at the next sample; after that at
    most one event per ``debounce_s`` per integration, carrying every rejection counted
    since the previous event and the window they fell in.
    """

    def __init__(self, debounce_s: float = 10.0) -> None:
        self.debounce_s = debounce_s
        self._state: dict[str, _Rate] = {}
        self._primed = False

    @staticmethod
    def stat_name(integration_id: str) -> str:
        return f"{integration_id}.http_local_rate_limit.rate_limited"

    def observe(
        self, stats: Mapping[str, float], ids: Iterable[str], now: float
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen = set()
        for ident in ids:
            total = stats.get(self.stat_name(ident))
            if total is None:
                continue
            seen.add(ident)
            state = self._state.get(ident)
            if state is None:
                # On the very first sample the counter is history from before we watched;
                # a counter that appears later belongs to a new listener and started at 0.
                state = self._state[ident] = _Rate(total if not self._primed else 0.0, now)
            # Counters only grow; a smaller value means Envoy restarted and began at 0.
            delta = total - state.total if total >= state.total else total
            if delta > 0:
                if state.pending == 0:
                    state.window_start = state.sampled_at
                state.pending += delta
            state.total, state.sampled_at = total, now
            due = state.last_emit is None or now - state.last_emit >= self.debounce_s
            if state.pending > 0 and due:
                out.append(
                    {
                        "id": ident,
                        "rate_limited": int(state.pending),
                        "total": int(total),
                        "window": {
                            "start": _iso(state.window_start),
                            "end": _iso(now),
                            "seconds": round(now - state.window_start, 3),
                        },
                    }
                )
                state.pending, state.last_emit = 0.0, now
        for gone in set(self._state) - seen:
            del self._state[gone]
        self._primed = True
        return out


_OPEN_GAUGES = ("cx_open", "rq_open", "rq_pending_open")


class BreakerTracker:
    """Open while hosts are ejected or a connection/request threshold is reached."""

    def __init__(self) -> None:
        self._open: dict[str, bool] = {}

    @staticmethod
    def reading(stats: Mapping[str, float], ident: str) -> dict[str, Any] | None:
        prefix = f"cluster.{ident}."
        ejections = stats.get(prefix + "outlier_detection.ejections_active")
        gauges = {g: stats.get(f"{prefix}circuit_breakers.default.{g}") for g in _OPEN_GAUGES}
        if ejections is None and all(v is None for v in gauges.values()):
            return None  # Envoy has no such cluster (yet)
        reasons = [g for g, v in gauges.items() if v]
        if ejections:
            reasons.insert(0, "outlier_ejection")
        return {
            "id": ident,
            "reasons": reasons,
            "ejections_active": int(ejections or 0),
            "hosts": int(stats.get(prefix + "membership_total", 0)),
            "gauges": {g: int(v or 0) for g, v in gauges.items()},
        }

    def observe(
        self, stats: Mapping[str, float], ids: Iterable[str]
    ) -> list[tuple[str, dict[str, Any]]]:
        """``(event_type, data)`` for every integration whose state changed."""
        out: list[tuple[str, dict[str, Any]]] = []
        seen = set()
        for ident in ids:
            reading = self.reading(stats, ident)
            if reading is None:
                continue
            seen.add(ident)
            is_open = bool(reading["reasons"])
            if is_open != self._open.get(ident, False):
                kind = "opened" if is_open else "closed"
                out.append((f"integration.circuit_breaker_{kind}", reading))
            self._open[ident] = is_open
        for gone in set(self._open) - seen:
            del self._open[gone]
        return out


class Claims(Protocol):
    async def claim(
        self, event_type: str, subject: str, window: int, count: int, ttl_s: float
    ) -> tuple[bool, int]: ...


class EnvoyStatsWatcher:
    """Polls Envoy's ``/stats`` and emits rate-limit and circuit-breaker events.

    With ``claims`` (Redis), a rate-limit event is published once per ``debounce_s`` window
    and integration for the whole fleet (:mod:`control_plane.events.window_claims`).
    """

    def __init__(
        self,
        stats: StatsSource,
        integrations: Integrations,
        emitter: Emitter,
        *,
        interval_s: float = 2.0,
        debounce_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        claims: Claims | None = None,
    ) -> None:
        self.claims = claims
        self.debounce_s = debounce_s
        # The last stats read (the fleet heartbeat publishes this pod's rate-limit counters).
        self.last_sample: Mapping[str, float] = {}
        self.stats = stats
        self.integrations = integrations
        self.emitter = emitter
        self.interval_s = interval_s
        self.clock = clock
        self.rates = RateLimitTracker(debounce_s)
        self.breakers = BreakerTracker()
        self.ratelimit_service = RateLimitServiceTracker()  # scope global
        self._down = False

    async def poll_once(self) -> int:
        """One sample; returns the number of events emitted."""
        items = {i.id: i for i in self.integrations() if i.enabled}
        sample = await self.stats()
        self.last_sample = sample
        emitted = 0
        now = self.clock()
        for data in self.rates.observe(sample, items, now):
            item = items[data["id"]]
            if self.claims is not None:
                window = int(now // self.debounce_s)
                first, total = await self.claims.claim(
                    "integration.rate_limit_exceeded",
                    item.id,
                    window,
                    int(data["rate_limited"]),
                    self.debounce_s,
                )
                if not first:
                    continue  # another replica published this window's event
                data = {**data, "fleet_rate_limited": total}
            await self.emitter.emit(
                "integration.rate_limit_exceeded", data, tenant=item.tenant, subject=item.id
            )
            emitted += 1
        changes = self.breakers.observe(sample, items)
        changes += self.ratelimit_service.observe(sample, items.values())
        for event_type, data in changes:
            item = items[data["id"]]
            await self.emitter.emit(event_type, data, tenant=item.tenant, subject=item.id)
            emitted += 1
        return emitted

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
                if self._down:
                    log.info("Envoy stats readable again")
                self._down = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Envoy restarting or not there yet: try again
                if not self._down:
                    log.warning("cannot read Envoy stats", extra={"error": str(exc)})
                self._down = True
            await asyncio.sleep(self.interval_s)


def nack_listener(emitter: Emitter, integrations: Integrations) -> NackListener:
    """An :attr:`XdsStatus.on_nack` listener publishing ``integration.config_rejected``.

    Envoy's ``error_detail`` names the rejected resources (e.g. "Error adding/updating
    listener(s) stripe: ..."), and resources are named after integration ids, so the ids
    found in the text are reported too.
    """

    def on_nack(node_id: str, type_url: str, version: str, message: str) -> None:
        items = {i.id: i for i in integrations()}
        named = sorted(
            i for i in items if re.search(rf"(?<![\w.-]){re.escape(i)}(?![\w-])", message)
        )
        only = items[named[0]] if len(named) == 1 else None
        emitter.emit_soon(
            "integration.config_rejected",
            {
                "node": node_id,
                "type_url": type_url,
                "rejected_version": version,
                "error": message,
                "integrations": named,
            },
            tenant=only.tenant if only else None,
            subject=only.id if only else None,
        )

    return on_nack


class HealthCheckLike(Protocol):
    """What :class:`control_plane.probing.runner.Prober` hands its callbacks (``HealthCheck``)."""

    @property
    def integration(self) -> Integration: ...
    @property
    def result(self) -> ProbeResult: ...
    @property
    def state(self) -> str: ...
    @property
    def previous(self) -> str: ...
    @property
    def trigger(self) -> str: ...


# Set while a probe runs on behalf of an event (``workflow.started``), so the resulting
# ``integration.health_check`` carries that event's correlation id. The prober awaits its
# callbacks in the probing task, so the value is visible there.
probe_correlation: ContextVar[str | None] = ContextVar("probe_correlation", default=None)


class HealthPublisher:
    """``integration.health_check`` for each probe (a ``Prober.callbacks`` entry)."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter

    async def on_health_check(self, check: HealthCheckLike) -> None:
        await self.publish(
            check.integration,
            check.result,
            state=check.state,
            previous=check.previous,
            trigger=check.trigger,
        )

    async def publish(
        self,
        item: Integration,
        result: ProbeResult,
        *,
        state: str | None = None,
        previous: str | None = None,
        trigger: str = "manual",
    ) -> dict[str, Any]:
        status = state or ("healthy" if result.ok else "unhealthy")
        data = {
            "id": item.id,
            "kind": item.kind,
            "status": status,
            "changed": previous is not None and previous != status,
            "previous": previous,
            "trigger": trigger,
            **result.as_dict(),
        }
        return await self.emitter.emit(
            "integration.health_check",
            data,
            tenant=item.tenant,
            subject=item.id,
            correlation_id=probe_correlation.get(),
        )
