"""Consumers of other services' events over real Redis: usage, probes, cache drops, and
garbage (malformed, unknown, duplicate) that is counted and never crashes anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.probes.result import ProbeResult
from control_plane.cloudevents import make_event
from control_plane.events.bus import Message
from control_plane.events.consumers import EventConsumer, UsageBook
from control_plane.events.redis_bus import RedisBus
from control_plane.events.relay import EventPublisher, OutboxRelay
from control_plane.events.watchers import HealthPublisher
from control_plane.probing.book import ProbeBook
from control_plane.registry.service import RegistryService
from tests.support.waiting import wait_until

pytestmark = pytest.mark.redis


def _event(event_type: str, data: dict[str, Any], **kw: Any) -> bytes:
    return json.dumps(make_event(event_type, data, source="/agent-service", **kw)).encode()


async def test_consumers_over_redis(redis_url: str, registry: RegistryService) -> None:
    for ident in ("stripe", "auth0"):
        await registry.create({"id": ident, "kind": "http", "upstream": "http://127.0.0.1:9"})
    bus = RedisBus(redis_url)
    relay = OutboxRelay(registry.store, bus, interval_s=0.2)
    publisher = EventPublisher(registry.store, bus, relay)
    health = HealthPublisher(publisher)
    probes = ProbeBook()
    probed: list[str] = []

    async def run_probe(ident: str) -> object:
        # What the prober does: probe, record, hand the result to its callbacks.
        item = registry.view.items[ident]
        result = ProbeResult(True, 3.0, "done", "ok")
        probed.append(ident)
        probes.record(ident, result)
        return await health.publish(item, result, trigger="manual")

    consumer = EventConsumer(
        usage=UsageBook(), probes=probes, known=lambda: registry.view.items, run_probe=run_probe
    )
    consumer.attach(bus)
    health_events: list[dict[str, Any]] = []

    async def on_health(message: Message) -> None:
        health_events.append(message.json())

    bus.subscribe(["integration.health_check"], on_health)
    await bus.start()
    await relay.start()
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await wait_until(lambda: bus.connected, message="subscribed")
        executed = make_event(
            "agent.executed",
            {"integrations": ["stripe", {"id": "auth0", "calls": 3}]},
            tenant="acme",
            source="/agent-service",
        )
        garbage: list[tuple[str, bytes]] = [
            ("agent.executed", b"{not json"),
            ("agent.executed", b"[1, 2, 3]"),
            ("agent.executed", json.dumps({"type": "agent.executed"}).encode()),  # no id...
            ("context.updated", json.dumps({**executed, "specversion": "0.3"}).encode()),
            ("agent.executed", _event("agent.retired", {"integration": "stripe"})),  # unknown
        ]
        for channel, body in garbage:
            await raw.publish(channel, body)
        body = json.dumps(executed).encode()
        for _ in range(3):  # the same event three times: processed once
            await raw.publish("agent.executed", body)
        await raw.publish(
            "agent.executed",
            _event("agent.executed", {"integration": "stripe", "tenant": "globex"}),
        )
        await raw.publish(
            "workflow.started",
            _event(
                "workflow.started",
                {"integrations": ["stripe", "not-registered"]},
                correlation_id="wf-42",
            ),
        )
        await wait_until(lambda: consumer.stats["received"] == 10, message="all delivered")
        await consumer.drain()
        await wait_until(lambda: len(health_events) == 1, message="probe result published")

        assert consumer.stats == {
            "received": 10,
            "processed": 3,
            "malformed": 4,
            "unknown": 1,
            "duplicates": 2,
            "failed": 0,
        }
        assert consumer.usage.for_integration("stripe") == {
            "acme": {"executions": 1, "calls": 1},
            "globex": {"executions": 1, "calls": 1},
        }
        assert consumer.usage.for_integration("auth0") == {"acme": {"executions": 1, "calls": 3}}

        assert probed == ["stripe"], "only registered integrations are probed"
        published = health_events[0]
        assert published["correlationid"] == "wf-42", "the workflow's correlation id"
        assert published["data"]["id"] == "stripe" and published["data"]["status"] == "healthy"

        assert probes.last("stripe") is not None
        await raw.publish("context.updated", _event("context.updated", {"integration": "stripe"}))
        await wait_until(lambda: probes.last("stripe") is None, message="cached probe dropped")
        assert probes.state_of("stripe") == "unknown"
    finally:
        await raw.aclose()
        await consumer.close()
        await relay.stop()
        await bus.stop()


async def test_handler_failure_is_counted_not_raised() -> None:
    async def broken(ident: str) -> object:
        raise RuntimeError("prober exploded")

    consumer = EventConsumer(
        usage=UsageBook(), probes=ProbeBook(), known=lambda: ["x"], run_probe=broken
    )
    await consumer.handle(
        Message("workflow.started", _event("workflow.started", {"integration": "x"}))
    )
    await consumer.drain()  # the probe task logs the failure; nothing propagates
    consumer.usage = None  # type: ignore[assignment]  # make the next handler fail
    await consumer.handle(Message("agent.executed", _event("agent.executed", {"integration": "x"})))
    assert consumer.stats["failed"] == 1 and consumer.stats["processed"] == 1
