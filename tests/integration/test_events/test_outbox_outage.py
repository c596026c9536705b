"""Redis down while 100 integrations are registered: mutations succeed, events wait in the
outbox, and after Redis returns all 100 arrive in order, each processed exactly once."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from control_plane.events.bus import Message
from control_plane.events.consumers import SeenIds
from control_plane.events.redis_bus import RedisBus
from control_plane.events.relay import OutboxRelay
from control_plane.registry.service import RegistryService
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.redis

COUNT = 100


class IdempotentConsumer:
    """Processes each event id once, however often it is delivered."""

    def __init__(self) -> None:
        self.seen = SeenIds()
        self.processed: list[str] = []
        self.deliveries = 0
        self.bodies: list[bytes] = []

    async def handle(self, message: Message) -> None:
        envelope = json.loads(message.body)
        self.deliveries += 1
        self.bodies.append(message.body)
        if self.seen.add((envelope["source"], envelope["id"])):
            self.processed.append(envelope["data"]["id"])


async def test_outage_delays_and_loses_nothing(
    restartable_redis: RedisServer, registry: RegistryService
) -> None:
    # One bus publishes and subscribes, as in a control plane process.
    bus = RedisBus(restartable_redis.url, backoff_initial_s=0.05, backoff_max_s=0.3)
    consumer = IdempotentConsumer()
    bus.subscribe(["integration.registered"], consumer.handle)
    relay = OutboxRelay(registry.store, bus, interval_s=0.5, retry_s=0.2)
    bus.on_connected.append(relay.resume)
    registry.subscribe(relay.registry_changed)
    await bus.start()
    await relay.start()
    try:
        await wait_until(lambda: bus.connected, message="subscribed")
        restartable_redis.stop()
        await wait_until(lambda: not bus.connected, message="outage noticed")

        names = [f"svc-{n:03d}" for n in range(COUNT)]
        for name in names:  # every mutation succeeds while Redis is down
            await registry.create({"id": name, "kind": "http", "upstream": "http://127.0.0.1:9"})
        assert len(registry.view.items) == COUNT
        assert len(await registry.store.pending_events(COUNT * 2)) == COUNT
        assert consumer.deliveries == 0
        assert relay.stats["failures"] >= 1 and relay.last_error

        restartable_redis.start()
        await wait_until(
            lambda: len(consumer.processed) == COUNT, deadline_s=20, message="all events"
        )
        assert consumer.processed == names, "in registration order"
        await wait_until(lambda: relay.last_error is None, message="relay healthy")
        assert await registry.store.pending_events() == [], "every event marked sent"

        # At-least-once: a relay that dies between publish and mark_sent sends again; the
        # consumer absorbs the re-delivered envelopes.
        again = consumer.deliveries
        client = aioredis.Redis.from_url(restartable_redis.url)
        try:
            for body in consumer.bodies[:5]:
                await client.publish("integration.registered", body)
        finally:
            await client.aclose()
        await wait_until(lambda: consumer.deliveries == again + 5, message="re-deliveries")
        assert consumer.processed == names, "each processed exactly once"
    finally:
        await relay.stop()
        await bus.stop()
