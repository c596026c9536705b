"""Wiring of the event machinery into the app: bus, outbox relay, publishers, consumers.

:func:`install_events` builds the objects (no I/O, no tasks) and appends one
``cleanup_ctx`` that starts them after the store and registry are up and stops them
before the store closes. The bus is Redis Pub/Sub when ``REDIS_URL`` is set, otherwise
in-process; with Redis, :class:`RegistrySync` keeps replicas on one PostgreSQL in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.api.keys import PROBER, PROBES, REGISTRY, SETTINGS, SIDECAR, STORE, XDS_CACHE
from control_plane.api.metrics import METRICS
from control_plane.events.bus import EventBus, InProcessBus
from control_plane.events.consumers import EventConsumer, RegistrySync, UsageBook
from control_plane.events.redis_bus import RedisBus
from control_plane.events.relay import EventPublisher, OutboxRelay
from control_plane.events.watchers import EnvoyStatsWatcher, HealthPublisher, nack_listener
from control_plane.registry.model import Integration
from control_plane.settings import Settings
from control_plane.sidecar.link import SidecarLink

__all__ = ["EVENTS", "EventsRuntime", "install_events", "make_bus"]

log = logging.getLogger(__name__)

# How long shutdown waits for a last outbox drain (what is left goes out on next start).
FINAL_DRAIN_S = 2.0


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

    def state(self) -> dict[str, Any]:
        return {
            "bus": type(self.bus).__name__,
            "connected": self.bus.connected,
            "relay": self.relay.state(),
            "consumer": dict(self.consumer.stats),
        }


EVENTS = web.AppKey("events", EventsRuntime)


def make_bus(settings: Settings) -> EventBus:
    return RedisBus(settings.redis_url) if settings.redis_url else InProcessBus()


# Only what the watchers read (rate-limit counters, ejections, breaker gauges).
WATCHED_STATS = (
    r"(\.http_local_rate_limit\.rate_limited"
    r"|\.outlier_detection\.ejections_active"
    r"|\.circuit_breakers\.default\.(cx|rq|rq_pending)_open)$"
)


async def _sidecar_stats(link: SidecarLink) -> Mapping[str, float]:
    async with link.admin(timeout=2.0) as admin:
        return await admin.stats(WATCHED_STATS)


class _EventCollector(Collector):
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


def install_events(app: web.Application) -> EventsRuntime:
    """Build the event machinery for ``app``; call after the core keys are set."""
    settings, store, registry = app[SETTINGS], app[STORE], app[REGISTRY]

    def items() -> list[Integration]:
        return list(registry.view.items.values())

    bus = make_bus(settings)
    relay = OutboxRelay(store, bus)
    publisher = EventPublisher(store, bus, relay)
    usage = UsageBook()
    consumer = EventConsumer(
        usage=usage, probes=app[PROBES], known=lambda: list(registry.view.items)
    )
    consumer.attach(bus)
    sync = RegistrySync(registry.refresh) if isinstance(bus, RedisBus) else None
    if sync is not None:
        sync.attach(bus)
    if isinstance(bus, RedisBus):
        bus.on_connected.append(relay.resume)
        if sync is not None:
            bus.on_connected.append(sync.request)
    runtime = EventsRuntime(
        bus=bus,
        relay=relay,
        publisher=publisher,
        health=HealthPublisher(publisher),
        consumer=consumer,
        usage=usage,
        watcher=EnvoyStatsWatcher(lambda: _sidecar_stats(app[SIDECAR]), items, publisher),
        sync=sync,
    )
    app[XDS_CACHE].status.on_nack.append(nack_listener(publisher, items))
    metrics = app.get(METRICS)
    if metrics is not None:
        relay.on_published.append(metrics.event_published)
        metrics.registry.register(_EventCollector(runtime))
    _hook_prober(app, runtime)
    app[EVENTS] = runtime
    app.cleanup_ctx.append(_events_ctx)
    return runtime


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[EVENTS]
    registry = app[REGISTRY]
    registry.subscribe(runtime.relay.registry_changed)
    await runtime.bus.start()
    await runtime.relay.start()
    if runtime.sync is not None:
        await runtime.sync.start()
    watcher = asyncio.create_task(runtime.watcher.run(), name="envoy-stats-watcher")
    log.info("events started", extra={"bus": type(runtime.bus).__name__})
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    if runtime.sync is not None:
        await runtime.sync.stop()
    await runtime.consumer.close()
    await runtime.publisher.close()
    await runtime.relay.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runtime.relay.drain(), FINAL_DRAIN_S)
    await runtime.bus.stop()


def _hook_prober(app: web.Application, runtime: EventsRuntime) -> None:
    """Probe results become ``integration.health_check``; ``workflow.started`` probes."""
    prober = app.get(PROBER)
    if prober is None:
        return
    prober.callbacks.append(runtime.health.on_health_check)
    registry = app[REGISTRY]

    async def run_probe(ident: str) -> object:
        item = registry.view.get(ident)
        return None if item is None else await prober.check(item, "manual")

    runtime.consumer.run_probe = run_probe
