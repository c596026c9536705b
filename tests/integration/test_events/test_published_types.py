"""Every event type the service publishes reaches a Redis subscriber as valid CloudEvents.

Real Redis and a real SQLite store: mutations go through the registry service (outbox in
the same transaction), the other events through the publisher and the relay. Envoy's stats
come from a scripted source (the watcher's seam); NACKs through the real ``XdsStatus``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

import pytest

from adapters.probes.result import ProbeResult
from control_plane.app.dns import refusal_publisher
from control_plane.cloudevents import envelope_problems
from control_plane.discovery.dns import VettedResolver
from control_plane.discovery.dns_lookup import DnsAnswer
from control_plane.events.bus import Message
from control_plane.events.redis_bus import RedisBus
from control_plane.events.relay import EventPublisher, OutboxRelay
from control_plane.events.watchers import EnvoyStatsWatcher, HealthPublisher, nack_listener
from control_plane.model import Integration
from control_plane.registry.loader import integration_from_document
from control_plane.registry.service import RegistryService
from control_plane.security.ssrf import Allowlist
from control_plane.xds.status import XdsStatus
from tests.support.waiting import wait_until

pytestmark = pytest.mark.redis

PUBLISHED = [
    "integration.registered",
    "integration.updated",
    "integration.health_check",
    "integration.rate_limit_exceeded",
    "integration.circuit_breaker_opened",
    "integration.circuit_breaker_closed",
    "integration.config_rejected",
    "integration.resolution_refused",
    "integration.deregistered",
]


def assert_cloudevent(channel: str, body: bytes) -> dict[str, object]:
    envelope = json.loads(body)
    # CloudEvents 1.0 REQUIRED attributes, checked here independently of our validator.
    assert envelope["specversion"] == "1.0"
    for name in ("id", "source", "type"):
        assert isinstance(envelope[name], str) and envelope[name], name
    assert envelope["type"] == channel, "one Redis channel per event type"
    assert envelope["datacontenttype"] == "application/json"
    assert dt.datetime.fromisoformat(envelope["time"]).tzinfo is not None, "RFC 3339 with zone"
    assert isinstance(envelope["data"], dict)
    assert envelope_problems(envelope) == []
    return dict(envelope)


async def test_subscriber_sees_every_type(redis_url: str, registry: RegistryService) -> None:
    publisher_bus = RedisBus(redis_url)
    subscriber = RedisBus(redis_url)
    seen: list[dict[str, object]] = []

    async def observe(message: Message) -> None:
        seen.append(assert_cloudevent(message.channel, message.body))

    subscriber.subscribe(["integration.*"], observe)
    relay = OutboxRelay(registry.store, publisher_bus, interval_s=0.2)
    publisher = EventPublisher(registry.store, publisher_bus, relay)
    registry.subscribe(relay.registry_changed)
    await subscriber.start()
    await publisher_bus.start()
    await relay.start()
    try:
        await wait_until(lambda: subscriber.connected, message="subscribed")
        doc = {"id": "pay", "kind": "http", "tenant": "acme", "upstream": "http://127.0.0.1:9"}
        item = await registry.create(doc, correlation_id="corr-1")
        item = await registry.update("pay", {**doc, "description": "x"}, item.version)

        await HealthPublisher(publisher).publish(item, ProbeResult(True, 12.5, "done", "ok"))

        samples: list[Mapping[str, float]] = [
            {"pay.http_local_rate_limit.rate_limited": 3.0, **_breaker(0)},
            {"pay.http_local_rate_limit.rate_limited": 10.0, **_breaker(1)},
            {"pay.http_local_rate_limit.rate_limited": 10.0, **_breaker(0)},
        ]

        async def stats() -> Mapping[str, float]:
            return samples.pop(0)

        watcher = EnvoyStatsWatcher(
            stats, lambda: registry.view.items.values(), publisher, debounce_s=0
        )
        for _ in range(3):
            await watcher.poll_once()

        status = XdsStatus()
        status.on_nack.append(nack_listener(publisher, lambda: registry.view.items.values()))
        status.record_nack(
            "node-1",
            "type.googleapis.com/envoy.config.listener.v3.Listener",
            "v7",
            "n1",
            "Error adding/updating listener(s) pay: malformed IP address: 1.2.3",
            13,
        )

        # Vetted resolution of a name answering the metadata address (no network: the
        # lookup is a stand-in; tests/integration/test_discovery has the real DNS).
        async def rebinding(name: str) -> DnsAnswer:
            return DnsAnswer(("169.254.169.254",), 30.0)

        resolver = VettedResolver(
            rebinding, Allowlist(), lambda *_: None, on_refused=refusal_publisher(publisher)
        )
        vetted = integration_from_document(
            {**doc, "upstream": "https://pay.example"}, source="registered"
        )
        await resolver.apply(_OneView(vetted))

        await publisher.close()
        await registry.delete("pay")

        await wait_until(lambda: len(seen) >= len(PUBLISHED), deadline_s=10, message="events")
    finally:
        await relay.stop()
        await publisher_bus.stop()
        await subscriber.stop()

    assert [e["type"] for e in seen] == PUBLISHED, "published in outbox order"
    by_type = {str(e["type"]): e for e in seen}
    assert all(e["tenant"] == "acme" and e["subject"] == "pay" for e in seen)
    assert by_type["integration.registered"]["correlationid"] == "corr-1"
    assert by_type["integration.registered"]["data"] == {"id": "pay", "kind": "http", "version": 1}
    health = by_type["integration.health_check"]["data"]
    assert isinstance(health, dict) and health["status"] == "healthy"
    limited = by_type["integration.rate_limit_exceeded"]["data"]
    assert isinstance(limited, dict)
    assert limited["rate_limited"] == 7 and limited["total"] == 10, "delta since first sample"
    assert set(limited["window"]) == {"start", "end", "seconds"}
    opened = by_type["integration.circuit_breaker_opened"]["data"]
    assert isinstance(opened, dict) and opened["reasons"] == ["outlier_ejection"]
    rejected = by_type["integration.config_rejected"]["data"]
    assert isinstance(rejected, dict)
    assert rejected["error"].startswith("Error adding/updating listener(s) pay")
    assert rejected["integrations"] == ["pay"] and rejected["rejected_version"] == "v7"
    refused = by_type["integration.resolution_refused"]["data"]
    assert isinstance(refused, dict) and refused["name"] == "pay.example"
    assert refused["refused"] == [{"address": "169.254.169.254", "rule": "metadata"}]
    assert len({e["id"] for e in seen}) == len(seen), "unique ids"


class _OneView:
    def __init__(self, item: Integration) -> None:
        self.item = item

    def enabled(self) -> list[Integration]:
        return [self.item]


def _breaker(ejected: int) -> dict[str, float]:
    prefix = "cluster.pay."
    return {
        prefix + "outlier_detection.ejections_active": float(ejected),
        prefix + "membership_total": 1.0,
        prefix + "circuit_breakers.default.cx_open": 0.0,
        prefix + "circuit_breakers.default.rq_open": 0.0,
        prefix + "circuit_breakers.default.rq_pending_open": 0.0,
    }


async def test_global_quota_service_outage_events(
    redis_url: str, registry: RegistryService
) -> None:
    """``integration.rate_limit_unavailable`` / ``_available`` (scope global) reach a Redis
    subscriber as valid CloudEvents, from Envoy's ratelimit filter counters."""
    publisher_bus, subscriber = RedisBus(redis_url), RedisBus(redis_url)
    seen: list[dict[str, object]] = []

    async def observe(message: Message) -> None:
        seen.append(assert_cloudevent(message.channel, message.body))

    subscriber.subscribe(["integration.rate_limit_*"], observe)
    relay = OutboxRelay(registry.store, publisher_bus, interval_s=0.2)
    publisher = EventPublisher(registry.store, publisher_bus, relay)
    await subscriber.start()
    await publisher_bus.start()
    await relay.start()
    try:
        await wait_until(lambda: subscriber.connected, message="subscribed")
        doc = {
            "id": "quota",
            "kind": "http",
            "tenant": "acme",
            "upstream": "http://127.0.0.1:9",
            "policies": {"rate_limit": {"requests": 5, "per": "1s", "scope": "global"}},
        }
        await registry.create(doc)
        p = "cluster.quota.ratelimit."
        samples: list[Mapping[str, float]] = [
            {p + "ok": 5.0, p + "error": 0.0, p + "failure_mode_allowed": 0.0},
            {p + "ok": 5.0, p + "error": 3.0, p + "failure_mode_allowed": 3.0},
            {p + "ok": 9.0, p + "error": 3.0, p + "failure_mode_allowed": 3.0},
        ]

        async def stats() -> Mapping[str, float]:
            return samples.pop(0)

        watcher = EnvoyStatsWatcher(stats, lambda: registry.view.items.values(), publisher)
        for _ in range(3):
            await watcher.poll_once()
        await publisher.close()
        await wait_until(lambda: len(seen) >= 2, deadline_s=10, message="events")
    finally:
        await relay.stop()
        await publisher_bus.stop()
        await subscriber.stop()
    assert [e["type"] for e in seen] == [
        "integration.rate_limit_unavailable",
        "integration.rate_limit_available",
    ]
    down = seen[0]["data"]
    assert isinstance(down, dict) and down["allowed_unchecked"] == 3
    assert down["failure_mode"] == "open"
    assert all(e["tenant"] == "acme" and e["subject"] == "quota" for e in seen)
