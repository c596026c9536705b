"""Listen-port clashes across two replicas that share PostgreSQL and Redis, each with its
own Envoy: nothing Envoy cannot bind is stored, so neither replica's Envoy NACKs and both
stay ready (regression: a port equal to the management API's was stored with 201 through A,
and the NACK of that listener made replica B unready too)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.e2e.faults.ledger import Figures
from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.replicas import running_replicas
from tests.support.service import ServiceProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.postgres, pytest.mark.redis]


async def _post(session: aiohttp.ClientSession, base: str, doc: dict[str, Any]) -> int:
    async with session.post(f"{base}/integrations", json=doc) as response:
        return response.status


async def _ready(session: aiohttp.ClientSession, service: ServiceProcess) -> int:
    async with session.get(f"{service.base_url}/health/ready") as response:
        return response.status


async def _listeners(envoy: EnvoySupervisor) -> set[str]:
    async with envoy.admin() as admin:
        return {
            name
            for name, item in dynamic_listeners(await admin.config_dump()).items()
            if "active_state" in item
        }


async def test_port_clashes_across_replicas_are_refused_before_storing(
    tmp_path: Path, postgres_database: str, redis_url: str, measure: Callable[[str], Figures]
) -> None:
    figures = measure("port_clash_replicas")
    env = {"POSTGRESQL_URL": postgres_database, "REDIS_URL": redis_url}
    async with running_replicas(tmp_path, env) as replicas:
        (a, envoy_a), (b, envoy_b) = replicas
        await a.wait_ready()
        await b.wait_ready()
        doc = {"id": "ledger", "kind": "http", "upstream": "http://127.0.0.1:9"}
        async with aiohttp.ClientSession() as session:
            own_api = await _post(session, a.base_url, {**doc, "listen_port": a.port})
            own_admin = await _post(session, a.base_url, {**doc, "listen_port": a.envoy_admin_port})
            taken = free_port()
            first = await _post(session, b.base_url, {**doc, "listen_port": taken})
            across = await _post(session, a.base_url, {**doc, "id": "other", "listen_port": taken})
            # The same free port claimed through both replicas at once: the shared store
            # keeps ports unique, so exactly one wins.
            contested = free_port()
            raced = await asyncio.gather(
                _post(session, a.base_url, {**doc, "id": "race-a", "listen_port": contested}),
                _post(session, b.base_url, {**doc, "id": "race-b", "listen_port": contested}),
            )

            async def converged() -> bool:
                for envoy in (envoy_a, envoy_b):
                    names = await _listeners(envoy)
                    if len(names & {"race-a", "race-b"}) != 1 or "ledger" not in names:
                        return False
                return True

            await wait_until(converged, deadline_s=10, message="both Envoys converged")
            ready = [await _ready(session, a), await _ready(session, b)]
            listeners = [await _listeners(envoy_a), await _listeners(envoy_b)]

    figures.update(
        {
            "own_api_port": own_api,
            "own_admin_port": own_admin,
            "port_of_an_integration_of_the_other_replica": across,
            "same_port_through_both_at_once": "/".join(str(s) for s in sorted(raced)),
            "ready_a_b": "/".join(str(s) for s in ready),
            "listeners_a_b": "/".join(str(len(x)) for x in listeners),
        }
    )
    assert (own_api, own_admin) == (422, 422), "refused before storing"
    assert first == 201 and across == 409
    assert sorted(raced) == [201, 409]
    assert ready == [200, 200], "no NACK anywhere: both replicas stay ready"
    assert listeners[0] == listeners[1] and len(listeners[0]) == 2
