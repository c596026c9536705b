"""The event machinery of one process, as one object: bus, outbox relay, publishers,
consumers and the Envoy stats watcher (``control_plane.app.events`` builds and starts it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.events.bus import EventBus, InProcessBus
from control_plane.events.consumers import EventConsumer, RegistrySync, UsageBook
from control_plane.events.recent import RecentEvents
from control_plane.events.redis_bus import RedisBus
from control_plane.events.relay import EventPublisher, OutboxRelay
from control_plane.events.watchers import EnvoyStatsWatcher, HealthPublisher
from control_plane.settings import Settings
from control_plane.sidecar.link import SidecarLink

__all__ = ["WATCHED_STATS", "EventCollector", "EventsRuntime", "make_bus", "sidecar_stats"]


@dataclass(slots=True)
class EventsRuntime:
    bus: EventBus
    relay: OutboxRelay
    publisher: EventPublisher
    health: HealthPublisher
    consumer: EventConsumer
    usage: UsageBook
    watcher: EnvoyStatsWatcher
    sync: RegistrySync | None
    #: The last events of each integration (the status page's detail view).
    recent: RecentEvents = field(default_factory=RecentEvents)

    def state(self) -> dict[str, Any]:
        return {
            "bus": type(self.bus).__name__,
            "connected": self.bus.connected,
            "relay": self.relay.state(),
            "consumer": dict(self.consumer.stats),
        }


def make_bus(settings: Settings) -> EventBus:
    return RedisBus(settings.redis_url) if settings.redis_url else InProcessBus()


# What the watchers read: rate-limit counters (``ok`` for the fleet's figures the heartbeat
# publishes; a global quota's answers from envoyproxy/ratelimit for the outage events),
# ejections and breaker gauges.
_WATCHED = (
    r"\.http_local_rate_limit\.(rate_limited|ok)",
    r"^cluster\.[^.]+\.ratelimit\.(ok|over_limit|error|failure_mode_allowed)",
    r"\.outlier_detection\.ejections_active",
    r"\.circuit_breakers\.default\.(cx|rq|rq_pending)_open",
)
WATCHED_STATS = "(" + "|".join(_WATCHED) + ")$"
# Asked for with ``usedonly``: the watched stats plus each cluster's membership_total, which
# Envoy sets when the cluster initializes, so it tells which clusters exist even when
# nothing else was written.
_USED_STATS = "(" + "|".join((*_WATCHED, r"^cluster\.[^.]+\.membership_total")) + ")$"
# Between the poll's two requests (see sidecar_stats).
_APART_S = 0.25
_CLUSTER_ZEROS = (
    "outlier_detection.ejections_active",
    "circuit_breakers.default.cx_open",
    "circuit_breakers.default.rq_open",
    "circuit_breakers.default.rq_pending_open",
)


async def sidecar_stats(link: SidecarLink) -> Mapping[str, float]:
    """The watched stats, as ``GET /stats?filter=WATCHED_STATS`` gives them.

    That request runs on Envoy's main thread, which also applies xDS updates; at 1,000
    integrations it took 120-290 ms there (most of it naming every counter to match the
    regex), and the updates that arrived meanwhile waited: the periodic stall of the
    propagation benchmark (issue 20). With ``usedonly`` Envoy skips stats never written
    first (35-55 ms), and asked for one store at a time (counters, then gauges) each request
    holds the thread half as long. What that leaves out is zero, so the sample is completed:
    for each cluster Envoy has (its ``membership_total``), every watched stat it lacks is 0.
    """
    async with link.admin(timeout=2.0) as admin:
        # Counters, then gauges: two requests of about half the time each (15-17 ms at 1,000
        # integrations, against 36 ms for one asking for both; 10-11 ms each since the
        # bootstrap's stats matcher drops the stats nobody reads), apart: asked back to
        # back they were one 20 ms window, and an update (a cluster, then its routes) that
        # met it waited for both. Apart, an update waits for at most one.
        used = await admin.stats(_USED_STATS, used_only=True, kind="Counters")
        await asyncio.sleep(_APART_S)
        used.update(await admin.stats(_USED_STATS, used_only=True, kind="Gauges"))
    sample: dict[str, float] = {}
    for name, value in used.items():
        if name.startswith("cluster.") and name.endswith(".membership_total"):
            ident = name[len("cluster.") : -len(".membership_total")]
            sample.setdefault(f"{ident}.http_local_rate_limit.rate_limited", 0)
            for stat in _CLUSTER_ZEROS:
                sample.setdefault(f"cluster.{ident}.{stat}", 0)
        else:
            sample[name] = value
    return sample


class EventCollector(Collector):
    """Usage from ``agent.executed`` and consumer outcomes, read at scrape time."""

    def __init__(self, runtime: EventsRuntime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        prefix = "integration_service_"
        executions = CounterMetricFamily(
            prefix + "agent_executions",
            "agent.executed events naming the integration, by tenant",
            labels=["integration", "tenant"],
        )
        calls = CounterMetricFamily(
            prefix + "agent_calls",
            "Calls to the integration reported by agent.executed, by tenant",
            labels=["integration", "tenant"],
        )
        for ident, tenant, n_exec, n_calls in self.runtime.usage.samples():
            executions.add_metric([ident, tenant], float(n_exec))
            calls.add_metric([ident, tenant], float(n_calls))
        consumed = CounterMetricFamily(
            prefix + "events_consumed",
            "Events received by the consumers, by outcome",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.runtime.consumer.stats.items()):
            consumed.add_metric([outcome], float(count))
        yield executions
        yield calls
        yield consumed
