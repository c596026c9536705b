"""A real Envoy on the shared bootstrap, configured over ADS by our xDS server.

Envoy is the judge of what we serve: it must apply a snapshot (visible in /config_dump and
in traffic through the listener), and it must be able to reject one (NACK) without our
server re-pushing the same config in a loop while the old listener keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from control_plane.sidecar.supervisor import EnvoySupervisor
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.resources import ADS_ORDER, CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from control_plane.xds.server import serve
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.status import TypeStatus
from control_plane.xds.translate.endpoints import FLEET_CLUSTER, fleet_assignment
from tests.support.envoy import dynamic_clusters, dynamic_listeners, running_envoy
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.xds import (
    assignment,
    credential_injector,
    eds_cluster,
    rds_listener,
    route_table,
    secret,
)

pytestmark = pytest.mark.envoy

NODE_ID = "xds-e2e"
UPSTREAM_BODY = "hello from the upstream"


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    """A loopback HTTP server standing in for the external service."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text=UPSTREAM_BODY)

    async def authorization(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("Authorization", "<none>"))

    app = web.Application()
    app.router.add_get("/authorization", authorization)
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture
async def xds() -> AsyncIterator[tuple[SnapshotCache, int]]:
    cache = SnapshotCache()
    server, port = await serve(cache, "127.0.0.1", 0)
    try:
        yield cache, port
    finally:
        await server.stop(None)


def _cluster(upstream_port: int) -> Any:
    cluster = cluster_pb2.Cluster(name="upstream", type=cluster_pb2.Cluster.STATIC)
    cluster.connect_timeout.seconds = 1
    cluster.load_assignment.CopyFrom(assignment("upstream", upstream_port))
    return cluster


def _listener(port: int, path_regex: str | None = None) -> Any:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="ingress")
    host = hcm.route_config.virtual_hosts.add(name="all", domains=["*"])
    route = host.routes.add()
    if path_regex is None:
        route.match.prefix = "/"
    else:
        route.match.safe_regex.regex = path_regex
    route.route.cluster = "upstream"
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(name="ingress")
    address = listener.address.socket_address
    address.address, address.port_value = "127.0.0.1", port
    chain_filter = listener.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    )
    chain_filter.typed_config.Pack(hcm)
    return listener


async def _get(port: int, path: str = "/v1/balance") -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=2)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


def _type_status(cache: SnapshotCache, type_url: str) -> TypeStatus | None:
    node = cache.status.get(NODE_ID)
    return None if node is None else node.types.get(type_url)


def _acked(cache: SnapshotCache, type_url: str) -> bool:
    status = _type_status(cache, type_url)
    return status is not None and status.state == "acked"


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_envoy_applies_the_snapshot_and_a_nack_is_not_re_pushed(
    tmp_path: Path, delta: bool, upstream_port: int, xds: tuple[SnapshotCache, int]
) -> None:
    cache, xds_port = xds
    listener_port = free_port()
    good = Snapshot.build(
        {
            CLUSTER: {"upstream": _cluster(upstream_port)},
            LISTENER: {"ingress": _listener(listener_port)},
        }
    )
    cache.set_snapshot(good)

    async with running_envoy(
        tmp_path / "envoy", node_id=NODE_ID, xds_port=xds_port, delta=delta
    ) as envoy:
        await wait_until(lambda: _acked(cache, CLUSTER) and _acked(cache, LISTENER), message="ACK")
        node = cache.status.get(NODE_ID)
        assert node is not None and node.connected
        assert node.stream_type == ("delta" if delta else "sotw")

        async with envoy.admin() as admin:
            dump = await admin.config_dump()
        cluster = dynamic_clusters(dump)["upstream"]
        assert cluster["cluster"]["type"] == "STATIC"
        listener = dynamic_listeners(dump)["ingress"]
        assert "active_state" in listener
        address = listener["active_state"]["listener"]["address"]["socket_address"]
        assert address["port_value"] == listener_port

        await _wait_for_traffic(listener_port)
        await _nack_round(envoy, cache, listener_port)


async def _wait_for_traffic(port: int) -> None:
    async def reaches_upstream() -> bool:
        status, body = await _get(port)
        return status == 200 and body == UPSTREAM_BODY

    await wait_until(reaches_upstream, message="request through the listener")


async def _nack_round(envoy: EnvoySupervisor, cache: SnapshotCache, port: int) -> None:
    lds = _type_status(cache, LISTENER)
    assert lds is not None
    pushes_before, acked_before = lds.push_count, lds.acked_version

    # An RE2 syntax error passes proto validation; Envoy rejects it when it builds the
    # route table, so it NACKs the listener and keeps serving the previous one.
    current = cache.snapshot
    assert current is not None
    bad = Snapshot.build(
        {CLUSTER: dict(current.get(CLUSTER)), LISTENER: {"ingress": _listener(port, "(")}}
    )
    cache.set_snapshot(bad)
    await wait_until(lambda: lds.state == "nacked", message="NACK of the bad listener")
    nack = lds.last_nack
    assert nack is not None
    # Envoy 1.40: "Error adding/updating listener(s) ingress: missing ): ("
    assert "ingress" in nack.message and "missing )" in nack.message, nack.message
    assert nack.version == lds.sent_version
    assert lds.acked_version == acked_before

    # No push loop: the refused version is not sent again.
    await asyncio.sleep(2)
    assert lds.push_count - pushes_before <= 2
    assert lds.push_count == pushes_before + 1

    status, body = await _get(port)
    assert (status, body) == (200, UPSTREAM_BODY)
    async with envoy.admin() as admin:
        stats = await admin.stats()
        dump = await admin.config_dump()
    assert stats.get("listener_manager.lds.update_rejected", 0) >= 1
    ingress = dynamic_listeners(dump)["ingress"]
    assert "missing )" in ingress["error_state"]["details"]
    active = ingress["active_state"]["listener"]
    routes = active["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    assert routes["virtual_hosts"][0]["routes"][0]["match"] == {"prefix": "/"}

    # A fixed snapshot is pushed and accepted again.
    cache.set_snapshot(
        Snapshot.build(
            {CLUSTER: dict(current.get(CLUSTER)), LISTENER: {"ingress": _listener(port, "/v1/.*")}}
        )
    )
    await wait_until(lambda: lds.state == "acked", message="ACK of the fixed listener")
    await _wait_for_traffic(port)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_eds_rds_and_sds_reach_envoy(
    tmp_path: Path, delta: bool, upstream_port: int, xds: tuple[SnapshotCache, int]
) -> None:
    """Every ADS type at once: an EDS cluster, an RDS route table and an SDS secret that
    the credential_injector filter puts into ``Authorization``."""
    cache, xds_port = xds
    listener_port = free_port()
    resources = {
        CLUSTER: {"upstream": eds_cluster("upstream")},
        ENDPOINT: {
            "upstream": assignment("upstream", upstream_port),
            # The bootstrap's local cluster (the fleet), which the control plane always serves.
            FLEET_CLUSTER: fleet_assignment(1),
        },
        LISTENER: {
            "ingress": rds_listener(
                "ingress", "ingress-routes", [credential_injector("upstream-token")], listener_port
            )
        },
        ROUTE: {"ingress-routes": route_table("ingress-routes", "upstream")},
        SECRET: {"upstream-token": secret("upstream-token", "Bearer sk_test_e2e")},
    }
    cache.set_snapshot(Snapshot.build(resources))

    async with running_envoy(
        tmp_path / "envoy", node_id=NODE_ID, xds_port=xds_port, delta=delta
    ) as envoy:
        await wait_until(
            lambda: all(_acked(cache, type_url) for type_url in ADS_ORDER),
            message="ACK of every type",
        )

        async def injected() -> bool:
            return await _get(listener_port, "/authorization") == (200, "Bearer sk_test_e2e")

        await wait_until(injected, message="credential injected from the SDS secret")
        async with envoy.admin() as admin:
            dump = await admin.config_dump(include_eds=True)
        assert dynamic_clusters(dump)["upstream"]["cluster"]["type"] == "EDS"
        assert "ingress" in dynamic_listeners(dump)

        # Rotating the secret pushes only SDS, and Envoy uses the new value.
        lds_pushes = _type_status(cache, LISTENER)
        assert lds_pushes is not None
        listener_push_count = lds_pushes.push_count
        resources[SECRET] = {"upstream-token": secret("upstream-token", "Bearer rotated")}
        cache.set_snapshot(Snapshot.build(resources))

        async def rotated() -> bool:
            return await _get(listener_port, "/authorization") == (200, "Bearer rotated")

        await wait_until(rotated, message="rotated secret in use")
        assert lds_pushes.push_count == listener_push_count

        # An updated EDS cluster warms again and needs its endpoints again, though they did
        # not change; the server follows the CDS push with EDS, so Envoy never has to wait
        # out the EDS initial_fetch_timeout (15 s) to activate it.
        resources[CLUSTER]["upstream"].connect_timeout.seconds = 7

        async def cluster_updated() -> bool:
            async with envoy.admin() as admin:
                dump = await admin.config_dump()
            warming = [
                c for cfg in dump["configs"] for c in cfg.get("dynamic_warming_clusters", [])
            ]
            active = dynamic_clusters(dump)["upstream"]["cluster"]
            return not warming and active.get("connect_timeout") == "7s"

        cache.set_snapshot(Snapshot.build(resources))
        await wait_until(cluster_updated, deadline_s=30, message="updated cluster active")
        async with envoy.admin() as admin:
            stats = await admin.stats()
        timeouts = {k: v for k, v in stats.items() if k.endswith(".init_fetch_timeout")}
        assert timeouts.get("cluster.upstream.init_fetch_timeout") == 0, timeouts
        assert not any(timeouts.values()), timeouts
        assert await _get(listener_port) == (200, UPSTREAM_BODY)
