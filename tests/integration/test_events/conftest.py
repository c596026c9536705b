"""Fixtures of the event tests: a Redis the test may stop and restart, and a registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from control_plane.registry.service import RegistryService
from control_plane.store.protocol import RegistryStore
from control_plane.store.sqlite import SqliteStore
from tests.support.redis_server import RedisServer


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for this test only; ``stop()``/``start()`` keep the port."""
    try:
        server = RedisServer(tmp_path)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[RegistryStore]:
    store = SqliteStore(tmp_path / "registry.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def registry(sqlite_store: RegistryStore) -> RegistryService:
    service = RegistryService(sqlite_store, integrations_file=None)
    await service.start()
    return service
