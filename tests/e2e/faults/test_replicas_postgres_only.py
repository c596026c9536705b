"""Two replicas on one PostgreSQL and no Redis, each with its own Envoy: a change through
either reaches the other's Envoy (PostgreSQL LISTEN/NOTIFY), and /health says how they
sync. (Regression: a registration on A stayed 404 on B for good, both ready, nothing
logged.)"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.e2e.faults.ledger import Figures
from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.replicas import running_replicas
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.postgres]

CHANGES = 10


async def _active(envoy: EnvoySupervisor) -> set[str]:
    async with envoy.admin() as admin:
        listeners = dynamic_listeners(await admin.config_dump())
    return {name for name, item in listeners.items() if "active_state" in item}


async def test_postgres_alone_keeps_replicas_in_step(
    tmp_path: Path, postgres_database: str, measure: Callable[[str], Figures]
) -> None:
    figures = measure("replicas_postgres_only")
    async with running_replicas(tmp_path, {"POSTGRESQL_URL": postgres_database}) as replicas:
        (a, _envoy_a), (b, envoy_b) = replicas
        await a.wait_ready()
        await b.wait_ready()
        seconds: list[float] = []
        async with aiohttp.ClientSession() as session:
            for n in range(CHANGES):
                ident = f"change-{n}"
                doc = {
                    "id": ident,
                    "kind": "http",
                    "upstream": "http://127.0.0.1:9",
                    "listen_port": free_port(),
                }
                started = time.monotonic()
                async with session.post(f"{a.base_url}/integrations", json=doc) as r:
                    assert r.status == 201, await r.text()

                async def in_b(ident: str = ident) -> bool:
                    return ident in await _active(envoy_b)

                await wait_until(in_b, deadline_s=10, message="B's Envoy has A's change")
                seconds.append(time.monotonic() - started)
            async with session.delete(f"{b.base_url}/integrations/change-0") as r:
                assert r.status == 204
            deleted = time.monotonic()

            async def gone_on_a() -> bool:
                async with session.get(f"{a.base_url}/integrations/change-0") as r:
                    return r.status == 404

            await wait_until(gone_on_a, deadline_s=10, message="B's deletion reaches A")
            deletion_s = time.monotonic() - deleted
            async with session.get(f"{b.base_url}/health") as r:
                sync = (await r.json())["checks"]["sync"]
            # Equal registries give equal versions, whatever each replica's data directory.
            versions = []
            for replica in (a, b):
                ready = await replica.wait_ready()
                versions.append(ready["checks"]["config"]["version"])

    figures.update(
        {
            "changes": CHANGES,
            "a_to_b_envoy_p50_s": round(statistics.median(seconds), 3),
            "a_to_b_envoy_max_s": round(max(seconds), 3),
            "deletion_b_to_a_api_s": round(deletion_s, 3),
            "sync_mode": sync.get("mode"),
            "sync_connected": sync.get("ok"),
            "same_snapshot_version_on_a_and_b": versions[0] == versions[1],
        }
    )
    assert max(seconds) < 5, seconds
    assert sync["mode"] == "postgres-notify" and sync["ok"] is True
    assert versions[0] == versions[1], versions
