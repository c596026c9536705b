"""Fleet membership through a real redis-server: sizes, the leave bound, an outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from control_plane.discovery.membership import FleetMembership
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis]


def _member(
    url: str,
    fleet: str,
    name: str,
    seen: list[tuple[int, dict[str, int]]],
    availability: list[bool],
    nodes: dict[str, int] | None = None,
) -> FleetMembership:
    return FleetMembership(
        url,
        fleet=fleet,
        member=name,
        local_nodes=lambda: dict(nodes or {}),
        on_change=lambda pods, workloads: seen.append((pods, workloads)),
        on_availability=lambda up, error: availability.append(up),
        interval_s=0.1,
        ttl_s=0.3,
    )


async def test_sizes_follow_beats_and_survive_an_outage(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    fleet = f"members-{free_port()}"
    seen_a: list[tuple[int, dict[str, int]]] = []
    up_a: list[bool] = []
    a = _member(redis.url, fleet, "a", seen_a, up_a, {"web": 2})
    b = _member(redis.url, fleet, "b", [], [], {"web": 3, "jobs": 1})
    try:
        await b.beat()
        await a.beat()
        assert seen_a[-1] == (2, {"jobs": 1, "web": 5})
        # b stops beating: it leaves once its last beat expires (ttl 0.3 s).
        await asyncio.sleep(0.4)
        await a.beat()
        assert seen_a[-1] == (1, {"web": 2})
        # Redis goes away: the last sizes stay, and that is said once.
        redis.stop()
        calls = len(seen_a)
        await a.beat()
        await a.beat()
        assert len(seen_a) == calls and a.status.pods == 1 and not a.status.connected
        assert up_a == [False] and a.status.error
        redis.start()
        await a.beat()
        assert up_a == [False, True] and a.status.connected and a.status.error is None
    finally:
        for member in (a, b):
            await member.close()
        redis.remove()
