"""RegistrySync: a burst of other replicas' changes is one re-read of the store, logged at
INFO; with nothing heard it still re-reads every ``interval_s``."""

from __future__ import annotations

import asyncio
import logging

import pytest

from control_plane.events.consumers import RegistrySync
from control_plane.store.notify import StoreChange
from tests.support.waiting import wait_until


class Refreshes:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


async def test_a_burst_of_peer_changes_is_one_refresh(caplog: pytest.LogCaptureFixture) -> None:
    refresh = Refreshes()
    sync = RegistrySync(refresh, interval_s=600.0, debounce_s=0.1)
    await sync.start()
    try:
        with caplog.at_level(logging.INFO, logger="control_plane.events.consumers"):
            for n in range(10):
                sync.peer_changed(StoreChange("replica-a", "create", f"id-{n % 3}"))
            await wait_until(lambda: refresh.count == 1, message="one refresh")
            await asyncio.sleep(0.3)
            assert refresh.count == 1 and sync.refreshes == 1
            sync.request()  # a reconnection: a re-read, no claim of another replica's change
            await wait_until(lambda: refresh.count == 2, message="second refresh")
        infos = [r for r in caplog.records if r.name == "control_plane.events.consumers"]
        assert [r.getMessage() for r in infos] == [
            "another replica changed the registry; re-reading the store"
        ]
        assert infos[0].__dict__["changes"] == 10
        assert infos[0].__dict__["ids"] == ["id-0", "id-1", "id-2"]
    finally:
        await sync.stop()


async def test_periodic_refresh_without_any_change() -> None:
    refresh = Refreshes()
    sync = RegistrySync(refresh, interval_s=0.05)
    await sync.start()
    try:
        await wait_until(lambda: refresh.count >= 3, deadline_s=5, message="periodic refreshes")
    finally:
        await sync.stop()
