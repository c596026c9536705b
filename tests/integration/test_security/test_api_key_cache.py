"""The per-process cache of verified API keys: hits skip the store, a local revocation
drops the key at once (even one racing a lookup), the TTL bounds how long another
replica's revocation takes, and expiry is still checked on every request."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from control_plane.security.api_keys import (
    CACHE_TTL_S,
    ApiKeyAuthenticator,
    AuthError,
    issue_key,
)
from control_plane.store.protocol import ApiKeyRecord
from control_plane.store.sqlite import SqliteStore
from tests.integration.test_security.conftest import ADMIN, Secure

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Clock:
    t: float = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Reads:
    """Counts the store's ``get_api_key`` calls; ``gate`` holds them while it is clear."""

    ids: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    read: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "registry.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def reads(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> Reads:
    counted = Reads()
    real = store.get_api_key

    async def get_api_key(key_id: str) -> ApiKeyRecord | None:
        counted.ids.append(key_id)
        record = await real(key_id)
        counted.read.set()
        if counted.gate is not None:
            await counted.gate.wait()
        return record

    monkeypatch.setattr(store, "get_api_key", get_api_key)
    return counted


async def _key(store: SqliteStore, expires_at: dt.datetime | None = None) -> tuple[str, str]:
    issued = issue_key(name="k", role="operator", tenant="acme", expires_at=expires_at, now=NOW)
    await store.create_api_key(issued.record)
    return issued.record.id, issued.key


async def test_a_verified_key_is_served_from_the_cache(store: SqliteStore, reads: Reads) -> None:
    clock = Clock()
    auth = ApiKeyAuthenticator(store, clock=clock)
    key_id, key = await _key(store)
    first = await auth.authenticate(key, now=NOW)
    clock.t += CACHE_TTL_S / 2
    second = await auth.authenticate(key, now=NOW)
    assert first == second
    assert first.id == f"api_key:{key_id}" and first.role == "operator"
    assert reads.ids == [key_id], "the second request did not touch the store"


async def test_wrong_secrets_and_unknown_keys_are_never_cached(
    store: SqliteStore, reads: Reads
) -> None:
    auth = ApiKeyAuthenticator(store, clock=Clock())
    key_id, key = await _key(store)
    await auth.authenticate(key, now=NOW)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(AuthError, match="unknown API key"):
            await auth.authenticate(forged, now=NOW)
        with pytest.raises(AuthError, match="unknown API key"):
            await auth.authenticate("isk_000000000000_" + "x" * 43, now=NOW)
    assert reads.ids == [key_id, key_id, "000000000000", key_id, "000000000000"]


async def test_revoking_invalidates_the_cache_at_once(store: SqliteStore, reads: Reads) -> None:
    auth = ApiKeyAuthenticator(store, clock=Clock())
    key_id, key = await _key(store)
    other_id, other = await _key(store)
    await auth.authenticate(key, now=NOW)
    await auth.authenticate(other, now=NOW)
    await store.revoke_api_key(key_id, NOW)
    auth.invalidate(key_id)
    with pytest.raises(AuthError, match="revoked"):
        await auth.authenticate(key, now=NOW)  # same clock: no TTL has passed
    await auth.authenticate(other, now=NOW)
    assert reads.ids == [key_id, other_id, key_id], "only the revoked key was re-read"


async def test_a_lookup_racing_a_revocation_does_not_fill_the_cache(
    store: SqliteStore, reads: Reads
) -> None:
    auth = ApiKeyAuthenticator(store, clock=Clock())
    key_id, key = await _key(store)
    reads.gate = asyncio.Event()
    in_flight = asyncio.create_task(auth.authenticate(key, now=NOW))
    await reads.read.wait()  # the lookup has read the still-valid record and is held
    await store.revoke_api_key(key_id, NOW)
    auth.invalidate(key_id)
    reads.gate.set()
    await in_flight  # it started before the revocation: it may still pass
    with pytest.raises(AuthError, match="revoked"):
        await auth.authenticate(key, now=NOW)
    assert reads.ids == [key_id, key_id]


async def test_after_the_ttl_the_store_is_read_again(store: SqliteStore, reads: Reads) -> None:
    """Another replica's revocation (a store write without a local invalidation) is seen
    within the TTL: the bounded window that docs/security.md states."""
    clock = Clock()
    auth = ApiKeyAuthenticator(store, clock=clock)
    key_id, key = await _key(store)
    await auth.authenticate(key, now=NOW)
    await store.revoke_api_key(key_id, NOW)  # as another replica would
    clock.t += CACHE_TTL_S * 0.9
    await auth.authenticate(key, now=NOW)  # still cached here
    assert reads.ids == [key_id]
    clock.t += CACHE_TTL_S * 0.1
    with pytest.raises(AuthError, match="revoked"):
        await auth.authenticate(key, now=NOW)
    assert reads.ids == [key_id, key_id]


async def test_expiry_is_checked_on_every_request(store: SqliteStore, reads: Reads) -> None:
    auth = ApiKeyAuthenticator(store, clock=Clock())
    key_id, key = await _key(store, expires_at=NOW + dt.timedelta(seconds=5))
    await auth.authenticate(key, now=NOW)
    with pytest.raises(AuthError, match="expired"):
        await auth.authenticate(key, now=NOW + dt.timedelta(seconds=5))
    assert reads.ids == [key_id], "the cached record's expires_at decided"


async def test_the_cache_is_bounded_and_can_be_off(store: SqliteStore, reads: Reads) -> None:
    auth = ApiKeyAuthenticator(store, cache_size=2, clock=Clock())
    keys = [await _key(store) for _ in range(3)]
    for _, key in keys:
        await auth.authenticate(key, now=NOW)
    await auth.authenticate(keys[0][1], now=NOW)  # the oldest was evicted
    await auth.authenticate(keys[2][1], now=NOW)  # the newest was kept
    assert reads.ids == [keys[0][0], keys[1][0], keys[2][0], keys[0][0]]
    reads.ids.clear()
    off = ApiKeyAuthenticator(store, cache_ttl_s=0, clock=Clock())
    for _ in range(2):
        await off.authenticate(keys[1][1], now=NOW)
    assert reads.ids == [keys[1][0]] * 2


async def test_revoking_through_the_api_beats_a_warm_cache(secure: Secure) -> None:
    headers = secure.as_("operator")
    for _ in range(3):  # cached after the first
        assert (await secure.client.get("/integrations", headers=headers)).status == 200
    revoke = await secure.client.delete(f"/api-keys/{secure.ids['operator']}", headers=ADMIN)
    assert revoke.status == 204
    after = await secure.client.get("/integrations", headers=headers)
    assert after.status == 401
    assert "revoked" in (await after.json())["detail"]
    assert (await secure.client.get("/integrations", headers=secure.as_("viewer"))).status == 200


async def test_concurrent_misses_share_one_store_read(store: SqliteStore, reads: Reads) -> None:
    """Lookups of one key that miss together wait for one read, not one read each."""
    clock = Clock()
    auth = ApiKeyAuthenticator(store, clock=clock)
    key_id, key = await _key(store)
    reads.gate = asyncio.Event()
    lookups = [asyncio.create_task(auth.authenticate(key, now=NOW)) for _ in range(8)]
    await reads.read.wait()
    reads.gate.set()
    principals = await asyncio.gather(*lookups)
    assert {p.id for p in principals} == {f"api_key:{key_id}"}
    assert reads.ids == [key_id]


async def test_a_lookup_after_a_revocation_does_not_join_an_earlier_read(
    store: SqliteStore, reads: Reads
) -> None:
    auth = ApiKeyAuthenticator(store, clock=Clock())
    key_id, key = await _key(store)
    reads.gate = asyncio.Event()
    before = asyncio.create_task(auth.authenticate(key, now=NOW))
    await reads.read.wait()  # read the still-valid record, held
    await store.revoke_api_key(key_id, NOW)
    auth.invalidate(key_id)
    after = asyncio.create_task(auth.authenticate(key, now=NOW))
    reads.gate.set()
    await before  # started before the revocation: it may still pass
    with pytest.raises(AuthError, match="revoked"):
        await after
    assert reads.ids == [key_id, key_id]
