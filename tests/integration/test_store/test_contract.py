"""One contract, two real engines: every test runs on SQLite and on PostgreSQL 15."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from control_plane.store.factory import create_store
from control_plane.store.migrations import MIGRATIONS
from control_plane.store.postgres import PostgresStore
from control_plane.store.protocol import (
    ApiKeyRecord,
    ApiKeyStore,
    AuditEntry,
    AuditQuery,
    AuditStore,
    ConflictError,
    IntegrationStore,
    NotFoundError,
    OutboxStore,
    RegistryStore,
    StoredIntegration,
    StoreUnavailableError,
)
from control_plane.store.sqlite import SqliteStore
from tests.integration.test_store.samples import doc, event


@dataclass(frozen=True)
class Backend:
    """How to open (again) a store on the same underlying database."""

    engine: str
    make: Callable[[], RegistryStore]
    location: str  # SQLite path or PostgreSQL DSN


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "nested" / "dir" / "registry.sqlite3"  # parents created on open
        return Backend("sqlite", lambda: SqliteStore(path), str(path))
    dsn: str = request.getfixturevalue("postgres_database")
    return Backend("postgres", lambda: PostgresStore(dsn), dsn)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[RegistryStore]:
    opened = backend.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def applied_migrations(backend: Backend) -> list[str]:
    if backend.engine == "sqlite":
        with sqlite3.connect(backend.location) as conn:
            return [r[0] for r in conn.execute("SELECT id FROM schema_migrations ORDER BY id")]
    conn = await asyncpg.connect(backend.location)
    try:
        rows = await conn.fetch("SELECT id FROM schema_migrations ORDER BY id")
        return [row["id"] for row in rows]
    finally:
        await conn.close()


# -- integrations --------------------------------------------------------------------------


async def test_implements_protocol(store: RegistryStore) -> None:
    assert isinstance(store, RegistryStore)


async def test_implements_each_concern_protocol(store: RegistryStore) -> None:
    for concern in (IntegrationStore, OutboxStore, ApiKeyStore, AuditStore):
        assert isinstance(store, concern), concern


async def test_create_get_list(store: RegistryStore) -> None:
    created = await store.create("stripe", doc("stripe", timeout_ms=500))
    await store.create("auth0", doc("auth0"))

    assert created.version == 1
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo is not None
    fetched = await store.get("stripe")
    assert fetched == created
    assert fetched is not None and fetched.document == doc("stripe", timeout_ms=500)
    assert [i.id for i in await store.list()] == ["auth0", "stripe"]
    assert await store.get("missing") is None


async def test_duplicate_create_conflicts(store: RegistryStore) -> None:
    await store.create("stripe", doc("stripe"))
    with pytest.raises(ConflictError):
        await store.create("stripe", doc("stripe", changed=True))
    stored = await store.get("stripe")
    assert stored is not None and stored.document == doc("stripe") and stored.version == 1


async def test_update_with_current_version(store: RegistryStore) -> None:
    v1 = await store.create("redis", doc("redis"))
    v2 = await store.update("redis", doc("redis", db=2), expected_version=1)

    assert v2.version == 2
    assert v2.updated_at > v1.updated_at
    assert v2.created_at == v1.created_at
    assert await store.get("redis") == v2
    v3 = await store.update("redis", doc("redis", db=3), expected_version=2)
    assert v3.version == 3 and v3.updated_at > v2.updated_at


async def test_stale_update_conflicts_and_keeps_document(store: RegistryStore) -> None:
    await store.create("redis", doc("redis"))
    current = await store.update("redis", doc("redis", db=2), expected_version=1)
    with pytest.raises(ConflictError):
        await store.update("redis", doc("redis", db=99), 1, [event("stale")])
    assert await store.get("redis") == current
    assert [e.id for e in await store.pending_events()] == []
    with pytest.raises(NotFoundError):
        await store.update("missing", doc("missing"), expected_version=1)


async def test_concurrent_updates_exactly_one_wins(store: RegistryStore) -> None:
    await store.create("email", doc("email"))
    results = await asyncio.gather(
        store.update("email", doc("email", winner="a"), expected_version=1),
        store.update("email", doc("email", winner="b"), expected_version=1),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, StoredIntegration)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], ConflictError)
    assert won[0].version == 2
    assert await store.get("email") == won[0]


async def test_delete_checks_version(store: RegistryStore) -> None:
    await store.create("s3", doc("s3"))
    await store.update("s3", doc("s3", bucket="b"), expected_version=1)
    with pytest.raises(ConflictError):
        await store.delete("s3", expected_version=1)
    assert await store.get("s3") is not None
    await store.delete("s3", expected_version=2)
    assert await store.get("s3") is None
    with pytest.raises(NotFoundError):
        await store.delete("s3")
    await store.create("http", doc("http"))
    await store.delete("http")  # no version: unconditional
    assert await store.list() == []


# -- listen ports --------------------------------------------------------------------------


async def test_ports_unique_stable_and_released_on_delete(
    backend: Backend, store: RegistryStore
) -> None:
    await store.create("stripe", doc("stripe"))
    await store.assign_port("stripe", 10001)
    await store.assign_port("declared-redis", 10002)  # declared in YAML, not registered
    with pytest.raises(ConflictError):
        await store.assign_port("auth0", 10001)
    await store.assign_port("stripe", 10001)  # re-assigning the same port is a no-op
    assert await store.port_assignments() == {"stripe": 10001, "declared-redis": 10002}

    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.port_assignments() == {"stripe": 10001, "declared-redis": 10002}
    finally:
        await reopened.close()

    await store.delete("stripe", expected_version=1)
    assert await store.port_assignments() == {"declared-redis": 10002}
    await store.assign_port("auth0", 10001)
    await store.release_port("declared-redis")
    assert await store.port_assignments() == {"auth0": 10001}


# -- outbox --------------------------------------------------------------------------------


async def test_outbox_written_with_mutations_in_order(store: RegistryStore) -> None:
    await store.create("stripe", doc("stripe"), [event("e1")])
    await store.update("stripe", doc("stripe", v=2), 1, [event("e2", "u"), event("e3", "u")])
    with pytest.raises(ConflictError):
        await store.create("stripe", doc("stripe"), [event("lost")])
    await store.append_events([event("e4", "probe")])
    await store.delete("stripe", 2, [event("e5", "integration.deleted")])

    pending = await store.pending_events()
    assert [e.id for e in pending] == ["e1", "e2", "e3", "e4", "e5"]
    seqs = [e.seq for e in pending]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and seqs[0] > 0
    assert pending[1].type == "u"
    assert pending[1].envelope == event("e2", "u").envelope
    assert all(e.created_at is not None and e.attempts == 0 for e in pending)
    assert [e.id for e in await store.pending_events(limit=2)] == ["e1", "e2"]

    await store.mark_sent(seqs[:2])
    assert [e.id for e in await store.pending_events()] == ["e3", "e4", "e5"]
    await store.mark_sent(seqs)
    assert await store.pending_events() == []
    await store.create("auth0", doc("auth0"), [event("e6")])
    assert [e.seq > seqs[-1] for e in await store.pending_events()] == [True]


async def test_duplicate_event_id_rolls_back_mutation(store: RegistryStore) -> None:
    await store.create("stripe", doc("stripe"), [event("same")])
    with pytest.raises(ConflictError):
        await store.create("auth0", doc("auth0"), [event("same")])
    assert await store.get("auth0") is None


# -- schema and durability -----------------------------------------------------------------


async def test_migrations_idempotent(backend: Backend, store: RegistryStore) -> None:
    await store.open()  # opening an open store is a no-op
    second = backend.make()
    await second.open()  # migrations already applied: nothing to do
    await second.close()
    assert await applied_migrations(backend) == sorted(m.id for m in MIGRATIONS)


async def test_data_survives_reopen(backend: Backend, store: RegistryStore) -> None:
    await store.create("stripe", doc("stripe"), [event("e1")])
    updated = await store.update("stripe", doc("stripe", v=2), expected_version=1)
    await store.close()
    await store.close()  # idempotent

    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.get("stripe") == updated
        assert [e.id for e in await reopened.pending_events()] == ["e1"]
        await reopened.ping()
    finally:
        await reopened.close()
    with pytest.raises(StoreUnavailableError):
        await store.ping()  # closed


def test_factory_picks_engine(tmp_path: Path) -> None:
    sqlite_store = create_store(None, tmp_path)
    assert isinstance(sqlite_store, SqliteStore)
    assert sqlite_store.path == tmp_path / "registry.sqlite3"
    assert isinstance(create_store("postgresql://u@localhost/db", tmp_path), PostgresStore)


# -- API keys and audit --------------------------------------------------------------------


def _key(ident: str, tenant: str | None = "acme", **extra: Any) -> ApiKeyRecord:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    fields: dict[str, Any] = {
        "id": ident,
        "prefix": f"isk_{ident}",
        "hash": "ab" * 32,
        "name": f"key {ident}",
        "role": "viewer",
        "tenant": tenant,
        "created_at": now,
        **extra,
    }
    return ApiKeyRecord(**fields)


async def test_api_keys_round_trip_list_and_revoke(store: RegistryStore) -> None:
    expires = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    await store.create_api_key(_key("k1", expires_at=expires))
    await store.create_api_key(_key("k2", tenant="globex"))
    await store.create_api_key(_key("k3", tenant="*"))
    with pytest.raises(ConflictError):
        await store.create_api_key(_key("k1"))

    got = await store.get_api_key("k1")
    assert got == _key("k1", expires_at=expires)
    assert await store.get_api_key("nope") is None
    assert [k.id for k in await store.list_api_keys()] == ["k1", "k2", "k3"]
    assert [k.id for k in await store.list_api_keys("globex")] == ["k2"]

    at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    revoked = await store.revoke_api_key("k1", at)
    assert revoked.revoked_at == at
    again = await store.revoke_api_key("k1", at + dt.timedelta(days=1))
    assert again.revoked_at == at, "the first revocation time is kept"
    assert (await store.get_api_key("k1")) == revoked
    with pytest.raises(NotFoundError):
        await store.revoke_api_key("nope", at)


async def test_audit_append_filter_and_page(store: RegistryStore) -> None:
    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    written = []
    for i in range(5):
        entry = AuditEntry(
            at=base + dt.timedelta(minutes=i),
            principal="api_key:a" if i % 2 == 0 else "jwt:b",
            tenant="acme" if i < 3 else "globex",
            action="integration.create" if i != 4 else "integration.delete",
            target=f"integration/x{i}",
            before=None if i == 0 else {"n": i - 1, "nested": {"k": [1, 2]}},
            after={"n": i},
            request_id=f"req-{i}",
        )
        written.append(await store.append_audit(entry))
    ids = [e.id for e in written]
    assert ids == sorted(ids) and len(set(ids)) == 5

    everything = await store.list_audit(AuditQuery())
    assert [e.id for e in everything] == ids[::-1], "newest first"
    assert everything[-1] == written[0]
    assert everything[0].before == {"n": 3, "nested": {"k": [1, 2]}}

    def only(**kw: Any) -> AuditQuery:
        return AuditQuery(**kw)

    assert [e.target for e in await store.list_audit(only(tenant="globex"))] == [
        "integration/x4",
        "integration/x3",
    ]
    assert len(await store.list_audit(only(principal="jwt:b"))) == 2
    assert len(await store.list_audit(only(action="integration.delete"))) == 1
    assert len(await store.list_audit(only(target="integration/x2"))) == 1
    window = await store.list_audit(
        only(since=base + dt.timedelta(minutes=1), until=base + dt.timedelta(minutes=3))
    )
    assert [e.target for e in window] == ["integration/x2", "integration/x1"]
    page = await store.list_audit(only(limit=2))
    older = await store.list_audit(only(limit=2, before_id=page[-1].id))
    assert [e.id for e in page + older] == ids[::-1][:4]
