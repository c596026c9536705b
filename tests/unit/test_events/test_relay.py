"""The relay keeps order and loses nothing when the bus fails part-way (real SQLite)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from control_plane.cloudevents import make_event
from control_plane.events.bus import Handler, InProcessBus, Message, PublishError
from control_plane.events.relay import OutboxRelay
from control_plane.store.protocol import OutboxEvent
from control_plane.store.sqlite import SqliteStore
from tests.support.waiting import wait_until


class FlakyBus:
    """A bus that accepts ``budget`` events, then refuses until given more."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.sent: list[int] = []
        self.connected = True

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def subscribe(self, types: Iterable[str], handler: Handler) -> None: ...

    async def publish(self, envelope: Mapping[str, Any]) -> None:
        if self.budget <= 0:
            raise PublishError("down")
        self.budget -= 1
        self.sent.append(envelope["data"]["n"])


def _events(n: int) -> list[OutboxEvent]:
    out = []
    for i in range(n):
        envelope = make_event("integration.test", {"n": i})
        out.append(OutboxEvent(id=envelope["id"], type="integration.test", envelope=envelope))
    return out


async def test_stops_at_first_failure_and_resumes_in_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        await store.append_events(_events(10))
        bus = FlakyBus(budget=4)
        relay = OutboxRelay(store, bus, batch=3)
        with pytest.raises(PublishError):
            await relay.drain()
        assert bus.sent == [0, 1, 2, 3]
        assert [e.envelope["data"]["n"] for e in await store.pending_events()] == list(
            range(4, 10)
        ), "the sent ones are marked, the rest wait in order"
        bus.budget = 100
        assert await relay.drain() == 6
        assert bus.sent == list(range(10))
        assert await store.pending_events() == []
    finally:
        await store.close()


async def test_in_process_bus_delivers_in_order_with_patterns(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    bus = InProcessBus()
    got: list[tuple[str, int]] = []

    async def handler(message: Message) -> None:
        got.append((message.channel, message.json()["data"]["n"]))

    async def broken(message: Message) -> None:
        raise RuntimeError("a failing handler does not stop the others")

    bus.subscribe(["integration.*"], broken)
    bus.subscribe(["integration.*"], handler)
    relay = OutboxRelay(store, bus, interval_s=0.05)
    await bus.start()
    await relay.start()
    try:
        await store.append_events(_events(5))
        relay.wake()
        await wait_until(lambda: len(got) == 5)
        assert got == [("integration.test", i) for i in range(5)]
    finally:
        await relay.stop()
        await bus.stop()
        await store.close()
