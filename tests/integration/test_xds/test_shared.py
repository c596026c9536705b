"""The shared topology's xDS server: TLS with client certificates, one view per workload.

A real gRPC client over real TLS (trustme CA) against the app's gate; Envoy-level checks
are in tests/e2e/test_fleet.py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from envoy.config.endpoint.v3 import endpoint_pb2

from control_plane.app.wiring import create_app
from control_plane.keys import FLEET, STORE, STORE_HEALTH, XDS_CACHE
from control_plane.registry.workloads import Workload, WorkloadBook
from control_plane.xds.gate import TlsFiles, TlsGate
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, SECRET
from control_plane.xds.translate.endpoints import FLEET_CLUSTER
from tests.support.app import app_settings
from tests.support.fleet import DeltaNode, FleetPki, open_delta, write_workloads

Shared = tuple[TestClient[Any, Any], FleetPki]

BILLING = "spiffe://test.local/ns/billing/sa/api"
PLATFORM = "spiffe://test.local/ns/platform/sa/web"
ENV = {
    "STRIPE_SECRET_KEY": "sk_test_shared_1234567890",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_shared_1234567890",
    "AUTH0_CLIENT_ID": "client-id-shared",
    "AUTH0_CLIENT_SECRET": "client-secret-shared-123",
}


@pytest_asyncio.fixture
async def shared(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Shared]:
    pki = FleetPki(tmp_path / "pki")
    workloads = write_workloads(
        tmp_path / "workloads.yaml",
        {
            "billing-api": ("billing", [BILLING]),
            "platform-web": ("platform", [PLATFORM]),
            "platform-jobs": ("platform", ["dns:jobs.platform.svc"]),
        },
    )
    settings = app_settings(
        tmp_path,
        auth="disabled",
        topology="shared",
        xds_tls_cert=pki.server_cert,
        xds_tls_key=pki.server_key,
        xds_client_ca=pki.ca_file,
        workloads_file=workloads,
        probe_xds_port=0,
        probe_enabled=False,
        fleet_heartbeat_interval=0.1,
    )
    client = await aiohttp_client(create_app(settings, environ=ENV))
    yield client, pki


def _port(client: TestClient[Any, Any]) -> int:
    port = client.app[FLEET].port
    assert port is not None
    return int(port)


async def _subscribe_all(node: DeltaNode, secret_names: list[str]) -> None:
    """Envoy's order: CDS (wildcard), then LDS, SDS by name; read until quiet."""
    node.subscribe(CLUSTER)
    node.subscribe(LISTENER)
    node.subscribe(SECRET, secret_names)
    for _ in range(3):
        await node.receive()
    with pytest.raises(TimeoutError):
        await node.receive(wait_s=0.5)


async def test_each_workload_gets_only_its_tenants_resources_and_secrets(
    shared: Shared,
) -> None:
    client, pki = shared
    every_secret = sorted(client.app[XDS_CACHE].snapshot.get(SECRET))
    assert any(name.startswith("stripe") for name in every_secret)
    billing = pki.client("billing", uri=BILLING)
    channel, stub = open_delta(_port(client), pki, billing)
    async with channel:
        node = DeltaNode(stub, "pod-billing-1")
        # It even asks for every secret by name, other tenants' included.
        await _subscribe_all(node, every_secret)
        assert set(node.resources[CLUSTER]) == {"stripe"}
        assert set(node.resources[LISTENER]) == {"stripe"}
        assert node.resources[SECRET] and all(
            name.startswith("stripe") for name in node.resources[SECRET]
        )
        await node.close()

    platform = pki.client("platform", uri=PLATFORM)
    channel, stub = open_delta(_port(client), pki, platform)
    async with channel:
        # Claiming the billing pod's node id changes nothing: the certificate decides.
        node = DeltaNode(stub, "pod-billing-1")
        await _subscribe_all(node, every_secret)
        assert "stripe" not in node.resources[CLUSTER]
        assert {"auth0", "postgresql", "redis"} <= set(node.resources[CLUSTER])
        assert not any(name.startswith("stripe") for name in node.resources.get(SECRET, {}))
        await node.close()
    status = client.app[XDS_CACHE].status
    keys = {n.node_id for n in status.nodes()}
    assert keys == {"billing-api/pod-billing-1", "platform-web/pod-billing-1"}


async def test_a_dns_san_identifies_a_workload(
    shared: Shared,
) -> None:
    client, pki = shared
    jobs = pki.client("jobs", dns="jobs.platform.svc")
    channel, stub = open_delta(_port(client), pki, jobs)
    async with channel:
        node = DeltaNode(stub, "jobs-1")
        node.subscribe(CLUSTER)
        await node.receive()
        assert "auth0" in node.resources[CLUSTER] and "stripe" not in node.resources[CLUSTER]
        await node.close()


async def _refused(port: int, pki: FleetPki, cert: Any) -> grpc.aio.AioRpcError:
    channel, stub = open_delta(port, pki, cert)
    async with channel:
        node = DeltaNode(stub, "intruder")
        node.subscribe(CLUSTER)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await node.receive(wait_s=10)
        return caught.value


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("none", "no_certificate"), ("foreign", "bad_certificate"), ("unknown", "unknown_identity")],
)
async def test_a_peer_without_a_valid_identity_gets_nothing_and_is_counted(
    shared: Shared,
    kind: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, pki = shared
    cert = {
        "none": None,
        "foreign": pki.foreign_client("foreign", BILLING),
        "unknown": pki.client("unknown", uri="spiffe://test.local/ns/billing/sa/other"),
    }[kind]
    error = await _refused(_port(client), pki, cert)
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED)
    gate = client.app[FLEET].gate
    assert gate is not None
    for _ in range(50):  # the gate counts once the handshake has failed on its side
        if gate.refusals[reason]:
            break
        await asyncio.sleep(0.05)
    assert gate.refusals[reason] >= 1
    assert not client.app[XDS_CACHE].status.nodes()  # no stream was ever opened
    assert any(getattr(r, "reason", None) == reason for r in caplog.records)
    metrics = await (await client.get("/metrics")).text()
    assert f'integration_service_xds_connections_refused_total{{reason="{reason}"}}' in metrics


async def test_the_plaintext_backend_serves_no_one_who_bypassed_the_gate(
    shared: Shared,
) -> None:
    client, _ = shared
    server = client.app[FLEET]._server
    assert server is not None
    gate = client.app[FLEET].gate
    assert gate is not None
    from envoy.service.discovery.v3 import ads_pb2_grpc

    backend = gate._backend_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{backend}") as channel:
        node = DeltaNode(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel), "sneaky")
        node.subscribe(CLUSTER)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await node.receive()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert gate.refusals["not_through_gate"] == 1


async def test_status_lists_each_node_of_the_workloads_that_run_it(
    shared: Shared,
) -> None:
    client, pki = shared
    channel, stub = open_delta(_port(client), pki, pki.client("billing", uri=BILLING))
    async with channel:
        node = DeltaNode(stub, "pod-billing-7")
        node.subscribe(CLUSTER)
        await node.receive()
        node.subscribe(LISTENER)
        await node.receive()
        await asyncio.sleep(0.2)  # the ACKs reach the server
        body = await (await client.get("/integrations/stripe/status")).json()
        fleet = body["fleet"]
        assert fleet["workloads"] == ["billing-api"]
        assert [(n["workload"], n["node_id"], n["state"]) for n in fleet["nodes"]] == [
            ("billing-api", "pod-billing-7", "acked")
        ]
        assert fleet["nodes"][0]["identity"] == BILLING
        assert fleet["lagging"] == []
        other = await (await client.get("/integrations/auth0/status")).json()
        assert other["fleet"]["nodes"] == []  # a billing node never runs platform's auth0
        ready = await client.get("/health/ready")
        assert ready.status == 200
        await node.close()


async def test_workloads_of_another_tenant_are_refused_before_storing(shared: Shared) -> None:
    client, _ = shared
    document = {
        "id": "ledger",
        "kind": "http",
        "tenant": "billing",
        "upstream": "https://api.weather.example.com",
        "workloads": ["billing-api", "platform-web"],
    }
    refused = await client.post("/integrations", json=document)
    assert refused.status == 422
    body = await refused.json()
    assert [e["pointer"] for e in body["errors"]] == ["/workloads/1"]
    assert "not a workload of tenant 'billing'" in body["errors"][0]["message"]
    assert (await client.get("/integrations/ledger")).status == 404
    document["workloads"] = ["billing-api"]
    created = await client.post("/integrations", json=document)
    assert created.status == 201, await created.text()
    assert (await created.json())["workloads"] == ["billing-api"]


async def test_a_replica_cut_off_from_its_store_is_not_ready(shared: Shared) -> None:
    client, _ = shared
    assert (await client.get("/health/ready")).status == 200
    await client.app[STORE].close()  # the store goes away under the replica
    await client.app[STORE_HEALTH].check()
    ready = await client.get("/health/ready")
    assert ready.status == 503
    body = await ready.json()
    assert body["checks"]["config"]["detail"] == "the store is unreachable"


async def test_a_workloads_fleet_is_its_connected_nodes(shared: Shared) -> None:
    """``scope: fleet`` divides by the workload's live nodes: the membership EDS a node
    gets counts the nodes of its workload (without Redis: those on this replica)."""
    client, pki = shared
    cert = pki.client("billing", uri=BILLING)
    opened = [open_delta(_port(client), pki, cert) for _ in range(2)]
    nodes = [DeltaNode(stub, f"billing-{n}") for n, (_, stub) in enumerate(opened)]
    try:
        first = nodes[0]
        first.subscribe(ENDPOINT, [FLEET_CLUSTER])
        response = await first.receive()
        sizes = [_members(response)]
        nodes[1].subscribe(ENDPOINT, [FLEET_CLUSTER])
        await nodes[1].receive()
        while sizes[-1] != 2:  # the next heartbeat counts the second node
            sizes.append(_members(await first.receive()))
        assert sizes[0] == 1 and sizes[-1] == 2
    finally:
        for node in nodes:
            await node.close()
        for channel, _ in opened:
            await channel.close(None)


def _members(response: Any) -> int:
    (resource,) = [r for r in response.resources if r.name == FLEET_CLUSTER]
    assignment = endpoint_pb2.ClusterLoadAssignment()
    resource.resource.Unpack(assignment)
    return sum(len(locality.lb_endpoints) for locality in assignment.endpoints)


async def test_the_gate_refuses_connections_past_its_limit(tmp_path: Path) -> None:
    pki = FleetPki(tmp_path / "pki")
    book = WorkloadBook.of([Workload("billing-api", "billing", (BILLING,))])
    relayed: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relayed.append(writer)

    backend = await asyncio.start_server(hold, "127.0.0.1", 0)
    gate = TlsGate(
        TlsFiles(pki.server_cert, pki.server_key, pki.ca_file),
        lambda: book,
        backend.sockets[0].getsockname()[1],
        max_connections=1,
    )
    port = await gate.start("127.0.0.1", 0)
    cert = pki.client("billing", uri=BILLING)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(cert.cert, cert.key)
    first: asyncio.StreamWriter | None = None
    try:
        _, first = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            _, second = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost"
            )
            second.transport.abort()
        assert gate.refusals["too_many_connections"] == 1
    finally:
        if first is not None:
            first.transport.abort()
        await gate.stop()
        for writer in relayed:
            writer.transport.abort()
        backend.close()
        await backend.wait_closed()
        await asyncio.sleep(0)
