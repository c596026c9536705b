"""Wiring of the event machinery into the app: bus, outbox relay, publishers, consumers.

:func:`install_events` builds the objects (no I/O, no tasks) and appends one
``cleanup_ctx`` that starts them after the store and registry are up and stops them
before the store closes. The bus is Redis Pub/Sub when ``REDIS_URL`` is set, otherwise
in-process. Replicas on one PostgreSQL keep in step with or without Redis: see
:mod:`control_plane.app.replicas` (its :class:`RegistrySync` is the runtime's ``sync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.app.replicas import install_replica_sync
from control_plane.events.consumers import EventConsumer, UsageBook
from control_plane.events.redis_bus import RedisBus
from control_plane.events.relay import EventPublisher, OutboxRelay
from control_plane.events.runtime import EventCollector, EventsRuntime, make_bus, sidecar_stats
from control_plane.events.watchers import EnvoyStatsWatcher, HealthPublisher, nack_listener
from control_plane.events.window_claims import WindowClaims
from control_plane.keys import (
    EVENTS,
    METRICS,
    PROBER,
    PROBES,
    REGISTRY,
    SETTINGS,
    SIDECAR,
    STORE,
    XDS_CACHE,
)
from control_plane.model import Integration

__all__ = ["install_events"]

log = logging.getLogger(__name__)

# How long shutdown waits for a last outbox drain (what is left goes out on next start).
FINAL_DRAIN_S = 2.0


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
    if isinstance(bus, RedisBus):
        bus.on_connected.append(relay.resume)
    runtime = EventsRuntime(
        bus=bus,
        relay=relay,
        publisher=publisher,
        health=HealthPublisher(publisher),
        consumer=consumer,
        usage=usage,
        watcher=EnvoyStatsWatcher(
            lambda: sidecar_stats(app[SIDECAR]),
            items,
            publisher,
            # With Redis: one rate_limit_exceeded per window and integration for the fleet.
            claims=WindowClaims(settings.redis_url, settings.fleet_name)
            if settings.redis_url
            else None,
        ),
        sync=None,
    )
    runtime.recent.attach(bus)
    app[XDS_CACHE].status.on_nack.append(nack_listener(publisher, items))
    metrics = app.get(METRICS)
    if metrics is not None:
        relay.on_published.append(metrics.event_published)
        metrics.registry.register(EventCollector(runtime))
    _hook_prober(app, runtime)
    app[EVENTS] = runtime
    app.cleanup_ctx.append(_events_ctx)
    # After _events_ctx: the store's change listener starts once the sync runs, stops first.
    runtime.sync = install_replica_sync(app, bus)
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
    if isinstance(runtime.watcher.claims, WindowClaims):
        await runtime.watcher.claims.close()
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
