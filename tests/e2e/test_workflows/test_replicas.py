"""Two control planes on one PostgreSQL and one Redis, each with its own Envoy.

A change made through replica A reaches replica B's Envoy: A commits the mutation and its
``integration.*`` event together (outbox), A's relay publishes on Redis, B hears it,
re-reads the shared store and pushes the new snapshot to its Envoy over xDS.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.envoy import dynamic_clusters, dynamic_listeners
from tests.support.ports import free_port
from tests.support.replicas import running_replicas

pytestmark = [pytest.mark.envoy, pytest.mark.postgres, pytest.mark.redis]

PROPAGATION_LIMIT_S = 2.0


async def _until_in_dump(envoy: EnvoySupervisor, ident: str, present: bool) -> float:
    """Seconds until ``ident``'s cluster and listener are (or are no longer) in Envoy."""
    started = time.monotonic()
    while True:
        async with envoy.admin() as admin:
            dump = await admin.config_dump()
        found = ident in dynamic_clusters(dump) and ident in dynamic_listeners(dump)
        gone = ident not in dynamic_clusters(dump) and ident not in dynamic_listeners(dump)
        if (present and found) or (not present and gone):
            return time.monotonic() - started
        if time.monotonic() - started > 10:
            raise AssertionError(f"{ident} {'never arrived' if present else 'never left'}")
        await asyncio.sleep(0.05)


async def test_change_through_a_reaches_b(
    tmp_path: Path, postgres_database: str, redis_url: str
) -> None:
    env = {"POSTGRESQL_URL": postgres_database, "REDIS_URL": redis_url}
    async with running_replicas(tmp_path, env) as replicas:
        (a, envoy_a), (b, envoy_b) = replicas
        await a.wait_http()
        await b.wait_http()

        document = {
            "id": "ledger",
            "kind": "http",
            "tenant": "acme",
            "upstream": "http://127.0.0.1:9",
            "listen_port": free_port(),
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{a.base_url}/integrations", json=document) as created:
                assert created.status == 201, await created.text()
            elapsed = await _until_in_dump(envoy_b, "ledger", present=True)
            assert elapsed < PROPAGATION_LIMIT_S, f"B's Envoy got it after {elapsed:.2f}s"
            await _until_in_dump(envoy_a, "ledger", present=True)

            async with session.get(f"{b.base_url}/integrations/ledger") as got:
                assert got.status == 200, "B's API serves it too"
                etag = got.headers["ETag"]

            # And back: a deletion through B leaves A's Envoy.
            async with session.delete(
                f"{b.base_url}/integrations/ledger", headers={"If-Match": etag}
            ) as gone:
                assert gone.status == 204, await gone.text()
            elapsed = await _until_in_dump(envoy_a, "ledger", present=False)
            assert elapsed < PROPAGATION_LIMIT_S, f"A's Envoy dropped it after {elapsed:.2f}s"
        assert "events wait in the outbox" not in a.log()
