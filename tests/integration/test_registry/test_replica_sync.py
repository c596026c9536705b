"""Two control planes on one PostgreSQL and no Redis stay in step (issue 14 item 3).

Each write commits a ``NOTIFY`` with the row; every replica LISTENs on a connection of its
own and re-reads the store when another replica changed it. Here two in-process apps share
one database: what is registered, replaced or removed through A shows through B's API
within :data:`CONVERGENCE_LIMIT_S`, and B still converges after its listener connection
was killed under it (it reconnects and re-reads everything it may have missed).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from tests.support.app import app_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

CONVERGENCE_LIMIT_S = 2.0
Client = TestClient[Any, Any]

DOC: dict[str, Any] = {
    "id": "ledger",
    "kind": "http",
    "tenant": "acme",
    "upstream": "https://ledger.example.com",
}


@pytest.fixture
async def replicas(
    tmp_path: Path, postgres_database: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[Client, Client]]]]:
    """``start(**settings)``: replicas A and B on one fresh database, no Redis."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> tuple[Client, Client]:
            clients = []
            for name in ("a", "b"):
                settings = app_settings(
                    tmp_path / name,
                    auth="disabled",
                    probe_enabled=False,
                    postgresql_url=postgres_database,
                    **overrides,
                )
                app = create_app(settings, environ={})
                clients.append(await stack.enter_async_context(TestClient(TestServer(app))))
            return clients[0], clients[1]

        yield start


async def _seconds_until(
    predicate: Callable[[], Awaitable[bool]], *, deadline_s: float, message: str
) -> float:
    started = time.monotonic()
    await wait_until(predicate, deadline_s=deadline_s, interval_s=0.02, message=message)
    return time.monotonic() - started


def _shows(
    client: Client, status: int, version: int | None = None, ident: str = DOC["id"]
) -> Callable[[], Any]:
    async def check() -> bool:
        async with client.get(f"/integrations/{ident}") as got:
            if got.status != status:
                return False
            return version is None or (await got.json())["version"] == version

    return check


async def _sync_check(client: Client) -> dict[str, Any]:
    async with client.get("/health") as got:
        assert got.status == 200
        check: dict[str, Any] = (await got.json())["checks"]["sync"]
        return check


async def test_post_put_delete_through_a_show_through_b(
    replicas: Callable[..., Awaitable[tuple[Client, Client]]],
) -> None:
    a, b = await replicas()
    assert (await b.get(f"/integrations/{DOC['id']}")).status == 404

    created = await a.post("/integrations", json=DOC)
    assert created.status == 201, await created.text()
    elapsed = {
        "post": await _seconds_until(
            _shows(b, 200, version=1), deadline_s=10, message="B serves the registration"
        )
    }

    changed = {**DOC, "description": "replaced through A"}
    replaced = await a.put(
        f"/integrations/{DOC['id']}", json=changed, headers={"If-Match": created.headers["ETag"]}
    )
    assert replaced.status == 200, await replaced.text()
    elapsed["put"] = await _seconds_until(
        _shows(b, 200, version=2), deadline_s=10, message="B serves the new version"
    )
    async with b.get(f"/integrations/{DOC['id']}") as got:
        body = await got.json()
        assert body["description"] == "replaced through A"
        assert got.headers["ETag"] == replaced.headers["ETag"], "B's entry is A's row"

    removed = await a.delete(
        f"/integrations/{DOC['id']}", headers={"If-Match": replaced.headers["ETag"]}
    )
    assert removed.status == 204, await removed.text()
    elapsed["delete"] = await _seconds_until(
        _shows(b, 404), deadline_s=10, message="B forgets the deletion"
    )
    print(f"convergence A -> B: {', '.join(f'{k} {v:.3f}s' for k, v in elapsed.items())}")
    assert max(elapsed.values()) < CONVERGENCE_LIMIT_S, elapsed

    for replica in (a, b):
        sync = await _sync_check(replica)
        assert sync["ok"] is True and sync["mode"] == "postgres-notify", sync
        assert sync["listener"]["connected"] is True, sync


async def test_b_converges_after_its_listener_connection_is_killed(
    replicas: Callable[..., Awaitable[tuple[Client, Client]]], postgres_database: str
) -> None:
    # No periodic re-read within the test: convergence must come from the listener.
    a, b = await replicas(registry_resync_interval=600.0)
    created = await a.post("/integrations", json=DOC)
    assert created.status == 201, await created.text()
    await wait_until(_shows(b, 200, version=1), message="B serves the registration")
    before = (await _sync_check(b))["listener"]
    assert before["connected"] is True and isinstance(before["pid"], int), before

    admin = await asyncpg.connect(postgres_database, timeout=10)
    try:
        # A change B never hears of (no NOTIFY), as when it is written while B's listener
        # is away: only the full re-read after B reconnects can bring it.
        await admin.execute(
            "UPDATE integrations SET version = version + 1,"
            " document = jsonb_set(document, '{description}', '\"missed\"') WHERE id = $1",
            DOC["id"],
        )
        assert await _shows(b, 200, version=1)(), "nothing else re-reads B's store"
        killed = await admin.fetchval("SELECT pg_terminate_backend($1)", before["pid"])
    finally:
        await admin.close()
    assert killed is True
    elapsed = await _seconds_until(
        _shows(b, 200, version=2), deadline_s=15, message="B re-reads after reconnecting"
    )
    print(f"convergence after the listener was killed: {elapsed:.3f}s")
    async with b.get(f"/integrations/{DOC['id']}") as got:
        assert (await got.json())["description"] == "missed"

    async def reconnected() -> bool:
        listener = (await _sync_check(b))["listener"]
        return bool(listener["connected"] and listener["pid"] != before["pid"])

    await wait_until(reconnected, message="B's listener connected again")
    after = (await _sync_check(b))["listener"]
    assert after["reconnects"] >= 1, after

    # And the new connection hears the next change as the old one did.
    other = {**DOC, "id": "ledger-2"}
    assert (await a.post("/integrations", json=other)).status == 201
    elapsed = await _seconds_until(
        _shows(b, 200, version=1, ident="ledger-2"), deadline_s=10, message="B hears the next"
    )
    assert elapsed < CONVERGENCE_LIMIT_S, elapsed


async def test_sqlite_alone_says_it_syncs_with_no_one(tmp_path: Path) -> None:
    app = create_app(app_settings(tmp_path, auth="disabled", probe_enabled=False), environ={})
    async with TestClient(TestServer(app)) as client:
        assert await _sync_check(client) == {"ok": True, "mode": "none"}
