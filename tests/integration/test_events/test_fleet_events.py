"""``integration.rate_limit_exceeded`` once per window for the fleet (real Redis)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from control_plane.events.watchers import EnvoyStatsWatcher
from control_plane.events.window_claims import WindowClaims
from control_plane.model import Integration, TlsSettings, Upstream
from tests.support.ports import free_port

pytestmark = [pytest.mark.redis]

ITEM = Integration("quota", "http", Upstream("api.example.com", 443, "https", TlsSettings()))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Mapping[str, Any]]] = []

    async def emit(self, event_type: str, data: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        self.events.append((event_type, data))
        return {}

    def emit_soon(self, event_type: str, data: Mapping[str, Any], **_: Any) -> None:
        self.events.append((event_type, data))


async def test_three_pods_publish_one_event_per_window(redis_url: str) -> None:
    fleet = f"events-{free_port()}"
    clock = [1000.0]
    counters = [0.0, 0.0, 0.0]
    pods = []
    for n in range(3):

        async def stats(n: int = n) -> Mapping[str, float]:
            return {"quota.http_local_rate_limit.rate_limited": counters[n]}

        recorder = Recorder()
        watcher = EnvoyStatsWatcher(
            stats,
            lambda: [ITEM],
            recorder,
            debounce_s=10.0,
            clock=lambda: clock[0],
            claims=WindowClaims(redis_url, fleet),
        )
        pods.append((watcher, recorder))
    try:
        for watcher, _ in pods:
            await watcher.poll_once()  # primes the counters
        for step in range(2):  # two windows, every pod limited in each
            clock[0] = 1000.0 + 10 * (step + 1)
            for n in range(3):
                counters[n] += 5
            for watcher, _ in pods:
                await watcher.poll_once()
        events = [e for _, recorder in pods for e in recorder.events]
        assert [t for t, _ in events] == ["integration.rate_limit_exceeded"] * 2
        assert all(data["fleet_rate_limited"] >= 5 for _, data in events)
    finally:
        for watcher, _ in pods:
            assert isinstance(watcher.claims, WindowClaims)
            await watcher.claims.close()
