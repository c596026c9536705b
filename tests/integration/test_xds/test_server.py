"""The ADS server over a real grpc.aio channel: ordering, ACK/NACK, updates, delta removals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from control_plane.xds.cache import SnapshotCache
from control_plane.xds.resources import (
    ADS_ORDER,
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    resource_name,
)
from control_plane.xds.server import serve
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.status import XdsStatus
from tests.support.waiting import wait_until
from tests.support.xds import assignment, complete, eds_cluster

NODE = "envoy-test"
QUIET_S = 0.5  # how long "no further response" is watched for


class DictSource:
    """The smallest SnapshotSource: one dict of snapshots by node id."""

    def __init__(self) -> None:
        self.status = XdsStatus()
        self.snapshots: dict[str, Snapshot] = {}
        self._changed = asyncio.Condition()

    async def put(self, node_id: str, snapshot: Snapshot) -> None:
        async with self._changed:
            self.snapshots[node_id] = snapshot
            self._changed.notify_all()

    def snapshot_for(self, node_id: str, workload: str | None = None) -> Snapshot | None:
        return self.snapshots.get(node_id)

    async def wait_for(
        self, node_id: str, after: str | None, workload: str | None = None
    ) -> Snapshot:
        async with self._changed:
            await self._changed.wait_for(
                lambda: node_id in self.snapshots and self.snapshots[node_id].version != after
            )
            return self.snapshots[node_id]


@dataclass
class Stream:
    """A client side of one ADS stream with a background reader."""

    call: Any
    responses: asyncio.Queue[Any]
    request_type: Any

    async def send(self, **fields: Any) -> None:
        await self.call.write(self.request_type(**fields))

    async def next(self, wait_s: float = 5.0) -> Any:
        return await asyncio.wait_for(self.responses.get(), wait_s)

    async def quiet(self) -> None:
        await asyncio.sleep(QUIET_S)
        assert self.responses.empty(), f"unexpected push: {self.responses.get_nowait()}"


@pytest.fixture
async def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
async def stub(cache: SnapshotCache) -> AsyncIterator[Any]:
    server, port = await serve(cache, "127.0.0.1", 0)
    assert port > 0
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    finally:
        await channel.close(None)
        await server.stop(None)


async def _open(call: Any, request_type: Any) -> AsyncIterator[Stream]:
    responses: asyncio.Queue[Any] = asyncio.Queue()

    async def read() -> None:
        async for response in call:
            responses.put_nowait(response)

    reader = asyncio.create_task(read())
    try:
        yield Stream(call, responses, request_type)
    finally:
        call.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


@pytest.fixture
async def sotw(stub: Any) -> AsyncIterator[Stream]:
    async for stream in _open(stub.StreamAggregatedResources(), discovery_pb2.DiscoveryRequest):
        yield stream


@pytest.fixture
async def delta(stub: Any) -> AsyncIterator[Stream]:
    async for stream in _open(stub.DeltaAggregatedResources(), discovery_pb2.DeltaDiscoveryRequest):
        yield stream


def _node(**fields: Any) -> dict[str, Any]:
    return {"node": {"id": NODE, "cluster": "test"}, **fields}


def _names(response: Any) -> list[str]:
    """Resource names in a SotW response (unpacked) or a delta response (Resource.name)."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return [resource.name for resource in response.resources]
    return [resource_name(_unpack(packed)) for packed in response.resources]


def _unpack(packed: Any) -> Any:
    classes = {
        CLUSTER: cluster_pb2.Cluster,
        ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        LISTENER: listener_pb2.Listener,
        ROUTE: route_pb2.RouteConfiguration,
        SECRET: secret_pb2.Secret,
    }
    message = classes[packed.type_url]()
    assert packed.Unpack(message)
    return message


def _with_second_cluster(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    out = {t: dict(r) for t, r in resources.items()}
    out[CLUSTER]["payments"] = eds_cluster("payments")
    out[ENDPOINT]["payments"] = assignment("payments")
    return out


def _requests_for_all_types() -> list[dict[str, Any]]:
    return [
        _node(type_url=CLUSTER),
        {"type_url": ENDPOINT, "resource_names": ["stripe"]},
        {"type_url": LISTENER},
        {"type_url": ROUTE, "resource_names": ["stripe-routes"]},
        {"type_url": SECRET, "resource_names": ["stripe-cert"]},
    ]


async def _subscribe_and_ack_all(stream: Stream, cache: SnapshotCache) -> dict[str, Any]:
    for fields in _requests_for_all_types():
        await stream.send(**fields)
    latest = {}
    for _ in ADS_ORDER:
        response = await stream.next()
        latest[response.type_url] = response
    for response in latest.values():
        names = _requests_for_all_types()[ADS_ORDER.index(response.type_url)]
        await stream.send(
            type_url=response.type_url,
            version_info=response.version_info,
            response_nonce=response.nonce,
            resource_names=names.get("resource_names", []),
        )
    return latest


async def test_sotw_initial_push_in_ads_order_and_acks_recorded(
    sotw: Stream, cache: SnapshotCache
) -> None:
    snapshot = Snapshot.build(complete())
    cache.set_snapshot(snapshot)
    latest = await _subscribe_and_ack_all(sotw, cache)
    assert list(latest) == list(ADS_ORDER)
    assert _names(latest[CLUSTER]) == ["stripe"]
    assert _names(latest[ENDPOINT]) == ["stripe"]
    assert _names(latest[SECRET]) == ["stripe-cert"]
    assert len({r.nonce for r in latest.values()}) == len(ADS_ORDER)
    assert latest[CLUSTER].version_info == snapshot.version_for(CLUSTER)
    await sotw.quiet()  # ACKs cause no further pushes

    node = cache.status.get(NODE)
    assert node is not None and node.connected and node.stream_type == "sotw"
    for type_url in ADS_ORDER:
        status = node.type(type_url)
        assert status.state == "acked", type_url
        assert status.acked_version == latest[type_url].version_info
        assert status.push_count == 1


async def test_sotw_snapshot_change_goes_out_in_ads_order(
    sotw: Stream, cache: SnapshotCache
) -> None:
    cache.set_snapshot(Snapshot.build(complete()))
    await _subscribe_and_ack_all(sotw, cache)
    changed = complete()
    changed[CLUSTER]["stripe"].connect_timeout.seconds = 3
    changed[ENDPOINT]["stripe"] = assignment("stripe", port=9443)
    changed[LISTENER]["stripe"].per_connection_buffer_limit_bytes.value = 1024
    changed[ROUTE]["stripe-routes"].virtual_hosts[0].domains.append("example.com")
    changed[SECRET]["stripe-cert"].generic_secret.secret.inline_string = "rotated"
    cache.set_snapshot(Snapshot.build(changed))
    order = [(await sotw.next()).type_url for _ in ADS_ORDER]
    assert order == list(ADS_ORDER)


async def test_sotw_only_changed_types_are_pushed(sotw: Stream, cache: SnapshotCache) -> None:
    cache.set_snapshot(Snapshot.build(complete()))
    await _subscribe_and_ack_all(sotw, cache)
    changed = complete()
    changed[SECRET]["stripe-cert"].generic_secret.secret.inline_string = "rotated"
    cache.set_snapshot(Snapshot.build(changed))
    response = await sotw.next()
    assert response.type_url == SECRET
    await sotw.quiet()


async def test_sotw_cluster_update_is_followed_by_unchanged_endpoints(
    sotw: Stream, cache: SnapshotCache
) -> None:
    cache.set_snapshot(Snapshot.build(complete()))
    before = await _subscribe_and_ack_all(sotw, cache)
    changed = complete()
    changed[CLUSTER]["stripe"].connect_timeout.seconds = 9
    cache.set_snapshot(Snapshot.build(changed))
    cds, eds = await sotw.next(), await sotw.next()
    assert (cds.type_url, eds.type_url) == (CLUSTER, ENDPOINT)
    # Same endpoints, same version: Envoy needs them anyway to finish warming the cluster.
    assert eds.version_info == before[ENDPOINT].version_info
    assert _names(eds) == ["stripe"]
    await sotw.quiet()


async def test_sotw_nack_is_recorded_and_not_resent(sotw: Stream, cache: SnapshotCache) -> None:
    nacks: list[tuple[str, str, str, str]] = []
    cache.status.on_nack.append(lambda *args: nacks.append(args))
    cache.set_snapshot(Snapshot.build(complete()))
    first = (await _subscribe_and_ack_all(sotw, cache))[CLUSTER]

    bad = _with_second_cluster(complete())
    cache.set_snapshot(Snapshot.build(bad))
    pushed = await sotw.next()
    assert pushed.type_url == CLUSTER and sorted(_names(pushed)) == ["payments", "stripe"]
    assert (await sotw.next()).type_url == ENDPOINT  # every CDS push is followed by EDS
    await sotw.send(
        type_url=CLUSTER,
        version_info=first.version_info,  # NACK: Envoy repeats the last accepted version
        response_nonce=pushed.nonce,
        error_detail={"code": 3, "message": "cluster 'payments': invalid lb_policy"},
    )
    await sotw.quiet()

    status = cache.status.get(NODE)
    assert status is not None
    cds = status.type(CLUSTER)
    assert cds.state == "nacked"
    assert cds.last_nack is not None
    assert cds.last_nack.version == pushed.version_info
    assert cds.last_nack.message == "cluster 'payments': invalid lb_policy"
    assert cds.acked_version == first.version_info
    assert cds.push_count == 2
    assert nacks == [(NODE, CLUSTER, pushed.version_info, "cluster 'payments': invalid lb_policy")]

    fixed = _with_second_cluster(complete())
    fixed[CLUSTER]["payments"].connect_timeout.seconds = 2
    cache.set_snapshot(Snapshot.build(fixed))
    again = await sotw.next()
    assert again.type_url == CLUSTER and again.version_info != pushed.version_info


async def test_sotw_new_names_are_answered_and_stale_nonces_ignored(
    sotw: Stream, cache: SnapshotCache
) -> None:
    cache.set_snapshot(Snapshot.build(_with_second_cluster(complete())))
    await sotw.send(**_node(type_url=ENDPOINT, resource_names=["stripe"]))
    first = await sotw.next()
    assert _names(first) == ["stripe"]
    await sotw.send(type_url=ENDPOINT, response_nonce="stale", resource_names=["payments"])
    await sotw.quiet()
    await sotw.send(
        type_url=ENDPOINT,
        version_info=first.version_info,
        response_nonce=first.nonce,
        resource_names=["stripe", "payments"],
    )
    second = await sotw.next()
    assert sorted(_names(second)) == ["payments", "stripe"]


async def test_delta_initial_update_removal_and_nack(delta: Stream, cache: SnapshotCache) -> None:
    cache.set_snapshot(Snapshot.build(_with_second_cluster(complete())))
    await delta.send(**_node(type_url=CLUSTER))
    await delta.send(type_url=ENDPOINT, resource_names_subscribe=["stripe", "payments"])
    cds = await delta.next()
    eds = await delta.next()
    assert (cds.type_url, eds.type_url) == (CLUSTER, ENDPOINT)
    snapshot = cache.snapshot
    assert snapshot is not None
    assert {r.name: r.version for r in cds.resources} == dict(snapshot.versions[CLUSTER])
    assert sorted(r.name for r in eds.resources) == ["payments", "stripe"]
    for response in (cds, eds):
        await delta.send(type_url=response.type_url, response_nonce=response.nonce)
    await delta.quiet()
    status = cache.status.get(NODE)
    assert status is not None and status.stream_type == "delta"
    assert status.type(CLUSTER).state == "acked"

    # An update sends only the changed resource.
    changed = _with_second_cluster(complete())
    changed[CLUSTER]["payments"].connect_timeout.seconds = 7
    cache.set_snapshot(Snapshot.build(changed))
    update = await delta.next()
    assert update.type_url == CLUSTER
    assert [r.name for r in update.resources] == ["payments"]
    assert list(update.removed_resources) == []
    # The updated EDS cluster gets its (unchanged) endpoints again, or it would stay
    # warming until initial_fetch_timeout.
    follow_up = await delta.next()
    assert follow_up.type_url == ENDPOINT
    assert [(r.name, r.version) for r in follow_up.resources] == [
        (r.name, r.version) for r in eds.resources if r.name == "payments"
    ]
    for response in (update, follow_up):
        await delta.send(type_url=response.type_url, response_nonce=response.nonce)
    await delta.quiet()

    # Deleting a cluster and its endpoints sends removals for both, CDS first.
    cache.set_snapshot(Snapshot.build(complete()))
    removed_cds, removed_eds = await delta.next(), await delta.next()
    assert (removed_cds.type_url, list(removed_cds.removed_resources)) == (CLUSTER, ["payments"])
    assert (removed_eds.type_url, list(removed_eds.removed_resources)) == (ENDPOINT, ["payments"])
    assert list(removed_cds.resources) == []
    for response in (removed_cds, removed_eds):
        await delta.send(type_url=response.type_url, response_nonce=response.nonce)

    # A NACK is recorded and the refused resource is not pushed again.
    bad = complete()
    bad[CLUSTER]["stripe"].connect_timeout.seconds = 1
    cache.set_snapshot(Snapshot.build(bad))
    refused = await delta.next()
    stripe_endpoints = await delta.next()
    assert [r.name for r in stripe_endpoints.resources] == ["stripe"]
    await delta.send(type_url=ENDPOINT, response_nonce=stripe_endpoints.nonce)
    await delta.send(
        type_url=CLUSTER,
        response_nonce=refused.nonce,
        error_detail={"code": 3, "message": "bad stripe cluster"},
    )
    await delta.quiet()
    cds_status = status.type(CLUSTER)
    assert cds_status.state == "nacked"
    assert cds_status.last_nack is not None
    assert cds_status.last_nack.message == "bad stripe cluster"
    assert cds_status.last_nack.version == refused.system_version_info

    # An unrelated change does not re-push the refused cluster either.
    unrelated = complete()
    unrelated[CLUSTER]["stripe"].connect_timeout.seconds = 1
    unrelated[ENDPOINT]["stripe"] = assignment("stripe", port=1234)
    cache.set_snapshot(Snapshot.build(unrelated))
    only_eds = await delta.next()
    assert only_eds.type_url == ENDPOINT
    await delta.quiet()

    # A new version of it is pushed.
    fixed = complete()
    fixed[CLUSTER]["stripe"].connect_timeout.seconds = 2
    fixed[ENDPOINT]["stripe"] = assignment("stripe", port=1234)
    cache.set_snapshot(Snapshot.build(fixed))
    resent = await delta.next()
    assert [r.name for r in resent.resources] == ["stripe"]


async def test_delta_reconnect_with_current_versions_sends_nothing_new(
    delta: Stream, cache: SnapshotCache
) -> None:
    snapshot = Snapshot.build(complete())
    cache.set_snapshot(snapshot)
    await delta.send(
        **_node(type_url=CLUSTER, initial_resource_versions=dict(snapshot.versions[CLUSTER]))
    )
    first = await delta.next()
    assert list(first.resources) == [] and list(first.removed_resources) == []
    await delta.send(type_url=LISTENER, initial_resource_versions={"stripe": "old", "gone": "old"})
    lds = await delta.next()
    assert [r.name for r in lds.resources] == ["stripe"]
    assert list(lds.removed_resources) == ["gone"]


async def test_dict_backed_source_drives_the_server() -> None:
    source = DictSource()
    server, port = await serve(source)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        async for stream in _open(stub.StreamAggregatedResources(), discovery_pb2.DiscoveryRequest):
            await stream.send(**_node(type_url=CLUSTER))
            await stream.quiet()  # no snapshot yet: Envoy keeps waiting
            await source.put(NODE, Snapshot.build(complete()))
            response = await stream.next()
            assert _names(response) == ["stripe"]
            node = source.status.get(NODE)
            assert node is not None and node.type(CLUSTER).push_count == 1
        # The server notices the closed stream and marks the node disconnected.
        node = source.status.get(NODE)
        assert node is not None
        await wait_until(lambda: not node.connected, deadline_s=5, message="disconnect")
    finally:
        await channel.close(None)
        await server.stop(None)


async def test_first_request_without_node_is_refused(stub: Any) -> None:
    call = stub.StreamAggregatedResources()
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unserved_types_are_ignored_but_their_node_counts(
    sotw: Stream, cache: SnapshotCache
) -> None:
    cache.set_snapshot(Snapshot.build(complete()))
    await sotw.send(**_node(type_url="type.googleapis.com/envoy.service.runtime.v3.Runtime"))
    await sotw.send(type_url=CLUSTER)  # node only on the first message, as Envoy sends it
    response = await sotw.next()
    assert response.type_url == CLUSTER
    await sotw.quiet()
