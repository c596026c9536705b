"""Writes through the API change only their own entry of the registry view: with 1,000
integrations stored, a POST, PUT or DELETE of one reads none of the others back from the
store (a real SQLite store behind a proxy that counts the rows its reads return)."""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from control_plane.keys import REGISTRY
from control_plane.registry.view import RegistryView
from control_plane.store.protocol import StoredIntegration
from control_plane.store.sqlite import SqliteStore
from tests.support.app import app_settings

STORED = 1_000
# Registered integrations get ports from this range; the declared ones of the repository's
# integrations file have their own ports below it (weather-api takes one from it).
PORTS = (20000, 21999)
# Rows a single write may read back: the integration it changes, nothing more.
HANDFUL = 3


def stored_doc(index: int) -> dict[str, Any]:
    return {
        "id": f"stored-{index:04d}",
        "kind": "http",
        "upstream": f"https://api-{index}.example.com",
        "listen_port": PORTS[0] + index,
    }


class CountingStore:
    """A real store, passed through; counts the integration rows ``list`` and ``get``
    return (and the port assignments read, for the report)."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.rows = 0
        self.calls: Counter[str] = Counter()
        self.port_entries = 0

    def reset(self) -> None:
        self.rows, self.port_entries = 0, 0
        self.calls.clear()

    def report(self, write: str) -> str:
        return (
            f"{write} among {STORED}: {self.rows} integration row(s) read, calls "
            f"{dict(self.calls)}, {self.port_entries} port assignment(s) read"
        )

    async def list(self) -> builtins.list[StoredIntegration]:
        rows = await self.inner.list()
        self.calls["list"] += 1
        self.rows += len(rows)
        return rows

    async def get(self, integration_id: str) -> StoredIntegration | None:
        row = await self.inner.get(integration_id)
        self.calls["get"] += 1
        self.rows += row is not None
        return row

    async def port_assignments(self) -> dict[str, int]:
        ports = await self.inner.port_assignments()
        self.calls["port_assignments"] += 1
        self.port_entries += len(ports)
        return ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Running:
    client: TestClient[Any, Any]
    store: CountingStore
    views: list[RegistryView]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    settings = app_settings(tmp_path, auth="disabled", probe_enabled=False, listen_port_range=PORTS)
    inner = SqliteStore(tmp_path / "registry.sqlite3")
    await inner.open()
    for index in range(STORED):
        doc = stored_doc(index)
        await inner.assign_port(doc["id"], doc["listen_port"])
        await inner.create(doc["id"], doc)
    await inner.close()
    store = CountingStore(inner)
    app = create_app(settings, store=store, environ={})
    async with TestClient(TestServer(app)) as client:
        views: list[RegistryView] = []
        app[REGISTRY].subscribe(views.append)
        yield Running(client, store, views)


async def test_writes_read_back_only_their_own_row(running: Running) -> None:
    client, store = running.client, running.store
    registry = client.app[REGISTRY]
    assert store.calls["list"] >= 1, "start-up reads the whole store"
    assert len([i for i in registry.view.items.values() if i.source == "registered"]) == STORED
    generation = registry.view.generation

    store.reset()
    created = await client.post(
        "/integrations",
        json={"id": "newcomer", "kind": "http", "upstream": "https://api.new.example.com"},
    )
    assert created.status == 201, await created.text()
    post_rows = store.rows
    print(store.report("POST"))
    assert store.calls["list"] == 0, "a create does not re-list the store"
    assert post_rows <= HANDFUL, f"POST read {post_rows} rows of the store"
    body = await created.json()
    others = {i.listen_port for i in registry.view.items.values() if i.id != "newcomer"}
    assert body["listen_port"] not in others, "the assigned port is free among all 1,000"
    assert PORTS[0] <= body["listen_port"] <= PORTS[1]
    assert registry.view.generation == generation + 1
    assert running.views[-1] is registry.view, "listeners got the new view"
    assert "newcomer" in running.views[-1].items

    store.reset()
    updated = await client.put(
        "/integrations/stored-0500",
        json={**stored_doc(500), "description": "changed"},
        headers={"If-Match": '"v1"'},
    )
    assert updated.status == 200, await updated.text()
    put_rows = store.rows
    print(store.report("PUT"))
    assert store.calls["list"] == 0, "an update does not re-list the store"
    assert put_rows <= HANDFUL, f"PUT read {put_rows} rows of the store"
    assert registry.view.get("stored-0500").description == "changed"  # type: ignore[union-attr]
    assert registry.view.generation == generation + 2

    store.reset()
    deleted = await client.delete("/integrations/stored-0001", headers={"If-Match": '"v1"'})
    assert deleted.status == 204, await deleted.text()
    delete_rows = store.rows
    print(store.report("DELETE"))
    assert store.calls["list"] == 0, "a delete does not re-list the store"
    assert delete_rows <= HANDFUL, f"DELETE read {delete_rows} rows of the store"
    assert registry.view.get("stored-0001") is None
    assert registry.view.generation == generation + 3
    assert running.views[-1] is registry.view


async def test_the_incremental_view_equals_a_full_rebuild(running: Running) -> None:
    client = running.client
    registry = client.app[REGISTRY]
    doc = {
        "id": "newcomer",
        "kind": "http",
        "upstream": "https://api.new.example.com",
        # Normalised on the way into the store: the view holds what the store holds.
        "policies": {"timeout": "1.0004s", "rate_limit": {"requests": 5, "tenant_header": "x-o"}},
    }
    assert (await client.post("/integrations", json=doc)).status == 201
    put = await client.put(
        "/integrations/stored-0007",
        json={**stored_doc(7), "enabled": False},
        headers={"If-Match": '"v1"'},
    )
    assert put.status == 200, await put.text()
    gone = await client.delete("/integrations/stored-0008", headers={"If-Match": '"v1"'})
    assert gone.status == 204
    incremental = registry.view

    await registry.refresh()  # re-reads the whole store; notifies only when it differs
    assert registry.view is incremental, "a full rebuild finds nothing to change"
    assert list(registry.view.items) == sorted(registry.view.items), "ordered by id"
