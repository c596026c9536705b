"""The status page's live feed and recent-events ring (no I/O: a counting producer)."""

from __future__ import annotations

import asyncio

from control_plane.cloudevents import make_event
from control_plane.events.bus import InProcessBus
from control_plane.events.feed import LiveFeed
from control_plane.events.recent import RecentEvents


async def test_one_production_per_tick_for_every_subscriber_and_none_without() -> None:
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        return calls

    feed = LiveFeed(produce, interval_s=0.2, min_interval_s=0.05)
    await asyncio.sleep(0.3)
    assert calls == 0, "nothing runs while no page is open"
    for _ in range(10):
        feed.join()
    version = await feed.wait_newer(0, 1.0)
    assert version >= 1 and feed.latest == calls
    await asyncio.sleep(0.5)
    assert 2 <= calls <= 5, "about one production per tick, not one per subscriber"
    for _ in range(10):
        await feed.leave()
    stopped_at = calls
    await asyncio.sleep(0.3)
    assert calls == stopped_at, "the last page gone, production stops"


async def test_poke_produces_sooner_and_current_reuses_a_fresh_value() -> None:
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        return calls

    feed = LiveFeed(produce, interval_s=30.0, min_interval_s=0.05)
    assert await feed.current(max_age_s=10) == 1
    assert await feed.current(max_age_s=10) == 1, "fresh enough: no second production"
    feed.join()
    await feed.wait_newer(1, 1.0)  # the loop's first production
    seen = feed.version
    feed.poke()
    assert await feed.wait_newer(seen, 1.0) > seen, "an event does not wait for the tick"
    await feed.close()
    assert feed.closed
    assert await feed.wait_newer(feed.version, 5.0) == feed.version, "closed wakes at once"
    await feed.leave()


async def test_warm_starts_the_first_production_once_and_current_waits_for_it() -> None:
    calls = 0
    release = asyncio.Event()

    async def produce() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    feed = LiveFeed(produce, interval_s=30.0)
    feed.warm()
    feed.warm()  # one first production, however many shells are served
    await asyncio.sleep(0.05)
    assert calls == 1
    waiting = asyncio.create_task(feed.current(max_age_s=10))
    await asyncio.sleep(0.05)
    release.set()
    assert await waiting == 1, "the production in progress, not a second one"
    assert calls == 1
    feed.warm()  # there is a production: nothing to warm
    await asyncio.sleep(0.05)
    assert calls == 1
    await feed.close()


async def test_recent_events_by_integration_newest_first_and_bounded() -> None:
    recent = RecentEvents(per_integration=3)
    heard: list[str] = []
    recent.listeners.append(heard.append)
    bus = InProcessBus()
    recent.attach(bus)
    await bus.start()
    try:
        for n in range(5):
            await bus.publish(
                make_event("integration.health_check", {"id": "stripe", "n": n}, tenant="billing")
            )
        await bus.publish(make_event("integration.updated", {"id": "x"}, subject="auth0"))
        await bus.publish(make_event("agent.executed", {"id": "stripe"}))  # not ours
        for _ in range(50):
            if len(heard) == 6:
                break
            await asyncio.sleep(0.01)
    finally:
        await bus.stop()
    assert [e["data"]["n"] for e in recent.for_integration("stripe")] == [4, 3, 2]
    assert [e["type"] for e in recent.for_integration("auth0")] == ["integration.updated"]
    assert recent.for_integration("nope") == []
    assert heard.count("stripe") == 5 and heard.count("auth0") == 1
