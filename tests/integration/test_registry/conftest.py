"""A RegistryService over a real SQLite store, on copies of the example files."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.registry.service import RegistryService
from control_plane.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[RegistryService]:
    shutil.copy(ROOT / "config" / "integrations.yaml", tmp_path / "integrations.yaml")
    shutil.copy(ROOT / "config" / "rate_limits.yaml", tmp_path / "rate_limits.yaml")
    store = SqliteStore(tmp_path / "registry.sqlite3")
    await store.open()
    registry = RegistryService(
        store,
        integrations_file=tmp_path / "integrations.yaml",
        rate_limits_file=tmp_path / "rate_limits.yaml",
        port_range=(12000, 12100),
    )
    await registry.start()
    yield registry
    await store.close()
