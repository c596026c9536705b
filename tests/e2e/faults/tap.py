"""A Redis Pub/Sub subscriber that counts the control plane's events by envelope id.

Pub/Sub keeps nothing for an absent subscriber, so the tap reconnects at once (every
20 ms) when Redis goes away: far sooner than the control plane's own subscriber, whose
back-off has grown during the outage and which publishes its backlog only once its own
subscriptions are live again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["EventTap", "tapping"]

_RETRY_S = 0.02


class EventTap:
    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.subjects: list[tuple[str, str]] = []  # (type, data.id) in arrival order
        self.live = asyncio.Event()
        self.reconnects = 0

    @property
    def delivered(self) -> int:
        return sum(self.ids.values())

    @property
    def duplicates(self) -> dict[str, int]:
        return {i: n for i, n in self.ids.items() if n > 1}

    def add(self, body: bytes) -> None:
        envelope = json.loads(body)
        self.ids[envelope["id"]] += 1
        self.by_type[envelope["type"]] += 1
        data = envelope.get("data") or {}
        self.subjects.append((envelope["type"], str(data.get("id", ""))))

    async def _session(self, redis_url: str, pattern: str) -> None:
        client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=0.5)
        pubsub = client.pubsub()
        try:
            await pubsub.psubscribe(pattern)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "psubscribe":
                    self.live.set()
                elif message["type"] == "pmessage":
                    self.add(message["data"])
        finally:
            self.live.clear()
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def run(self, redis_url: str, pattern: str) -> None:
        while True:
            try:
                await self._session(redis_url, pattern)
            except (RedisError, OSError):
                self.reconnects += 1
                await asyncio.sleep(_RETRY_S)


@asynccontextmanager
async def tapping(redis_url: str, pattern: str = "integration.*") -> AsyncIterator[EventTap]:
    """Subscribed (confirmed by Redis) before the block runs; unsubscribed after it."""
    tap = EventTap()
    task = asyncio.create_task(tap.run(redis_url, pattern), name="event-tap")
    try:
        await asyncio.wait_for(tap.live.wait(), 10)
        yield tap
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
