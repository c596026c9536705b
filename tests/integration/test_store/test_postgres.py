"""PostgreSQL unreachable: the store says so, writes nothing and never leaks the password."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from control_plane.store.postgres import PostgresStore, redact_dsn
from control_plane.store.protocol import RegistryStore, StoreUnavailableError
from tests.integration.test_store.samples import doc, event
from tests.support.ports import free_port
from tests.support.postgres import PostgresUnavailable, find_bin_dir, running_postgres
from tests.support.waiting import wait_until

SECRET = secrets.token_hex(12)  # a password that must never show up in messages


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://app:s3cr3t@db:5432/reg", "postgresql://app:***@db:5432/reg"),
        ("postgresql://app@db/reg?password=s3cr3t&sslmode=require", None),
        ("postgresql://db/reg", "postgresql://db/reg"),
        ("host=db user=app password=s3cr3t dbname=reg", "host=db user=app password=*** dbname=reg"),
    ],
)
def test_redact_dsn(dsn: str, expected: str | None) -> None:
    redacted = redact_dsn(dsn)
    assert "s3cr3t" not in redacted
    if expected is not None:
        assert redacted == expected


@pytest.mark.postgres
async def test_open_against_closed_port_is_unavailable() -> None:
    store = PostgresStore(
        f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/reg", connect_timeout=2
    )
    with pytest.raises(StoreUnavailableError) as info:
        await store.open()
    assert SECRET not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    with pytest.raises(StoreUnavailableError):
        await store.ping()  # never opened


@pytest.mark.postgres
async def test_server_stopping_is_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    try:
        find_bin_dir()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with running_postgres() as server:
        dsn = server.dsn("postgres", password=SECRET)  # trust auth: the password is unused
        store = PostgresStore(dsn, connect_timeout=2, command_timeout=5)
        await store.open()
        try:
            await store.create("stripe", doc("stripe"))
            await asyncio.to_thread(server.stop)

            for attempt in (
                store.create("auth0", doc("auth0"), [event("e1")]),
                store.update("stripe", doc("stripe", v=2), 1),
                store.ping(),
                store.list(),
            ):
                with pytest.raises(StoreUnavailableError) as info:
                    await attempt
                assert SECRET not in str(info.value)
                assert "unavailable" in str(info.value)

            await asyncio.to_thread(server.start)  # same data dir, same port
            await wait_until(_pings(store), deadline_s=15, message="pool reconnects")
            assert [i.id for i in await store.list()] == ["stripe"]
            assert (await store.get("stripe")) is not None
            assert await store.pending_events() == []
        finally:
            await store.close()


def _pings(store: RegistryStore) -> Callable[[], Any]:
    async def check() -> bool:
        await store.ping()
        return True

    return check
