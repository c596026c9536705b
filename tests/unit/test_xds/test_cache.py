"""Snapshot cache watches and the per-node delivery status."""

from __future__ import annotations

import asyncio

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from control_plane.xds.cache import SnapshotCache
from control_plane.xds.resources import CLUSTER, LISTENER
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot
from control_plane.xds.status import XdsStatus
from tests.support.xds import complete, eds_cluster


def _snapshot(*names: str) -> Snapshot:
    return Snapshot.build({CLUSTER: {n: cluster_pb2.Cluster(name=n) for n in names}})


async def test_wait_for_returns_on_a_new_version_only() -> None:
    cache = SnapshotCache()
    waiter = asyncio.create_task(cache.wait_for("node", None))
    await asyncio.sleep(0)
    assert not waiter.done()
    first = _snapshot("a")
    cache.set_snapshot(first)
    assert await asyncio.wait_for(waiter, 1) is first

    waiter = asyncio.create_task(cache.wait_for("node", first.version))
    cache.set_snapshot(_snapshot("a"))  # same content, same version: no wake-up
    await asyncio.sleep(0.01)
    assert not waiter.done()
    second = _snapshot("a", "b")
    cache.set_snapshot(second)
    assert await asyncio.wait_for(waiter, 1) is second


async def test_per_node_override_and_fallback() -> None:
    cache = SnapshotCache()
    shared, special = _snapshot("a"), _snapshot("b")
    cache.set_snapshot(shared)
    cache.set_snapshot(special, node_id="canary")
    assert cache.snapshot_for("canary") is special
    assert cache.snapshot_for("other") is shared
    waiter = asyncio.create_task(cache.wait_for("canary", special.version))
    cache.clear_node("canary")
    assert await asyncio.wait_for(waiter, 1) is shared


def test_inconsistent_snapshot_is_never_served() -> None:
    cache = SnapshotCache()
    good = Snapshot.build(complete())
    cache.set_snapshot(good)
    broken = Snapshot.unchecked({CLUSTER: {"x": eds_cluster("x")}})
    with pytest.raises(InconsistentSnapshot):
        cache.set_snapshot(broken)
    assert cache.snapshot is good


def test_status_states_and_listeners() -> None:
    status = XdsStatus()
    acks: list[tuple[str, str, str]] = []
    nacks: list[tuple[str, str, str, str]] = []

    def broken(*_: str) -> None:
        raise RuntimeError("listener bug")

    status.on_ack.extend([broken, lambda n, t, v: acks.append((n, t, v))])
    status.on_nack.extend([broken, lambda n, t, v, m: nacks.append((n, t, v, m))])

    node = status.stream_opened("envoy-1", "delta")
    assert node.connected and node.stream_type == "delta"
    cds = node.type(CLUSTER)
    assert node.type(CLUSTER).state == "idle"
    status.record_sent("envoy-1", CLUSTER, "v1", "1")
    assert node.type(CLUSTER).state == "pending" and cds.push_count == 1
    status.record_ack("envoy-1", CLUSTER, "v1")
    assert node.type(CLUSTER).state == "acked" and acks == [("envoy-1", CLUSTER, "v1")]
    status.record_sent("envoy-1", CLUSTER, "v2", "2")
    status.record_nack("envoy-1", CLUSTER, "v2", "2", "bad cluster", 3)
    assert node.type(CLUSTER).state == "nacked"
    assert cds.acked_version == "v1"  # Envoy keeps running the last accepted version
    assert nacks == [("envoy-1", CLUSTER, "v2", "bad cluster")]
    assert cds.last_nack is not None and cds.last_nack.code == 3

    dumped = node.as_dict()
    assert dumped["types"][CLUSTER]["state"] == "nacked"
    assert dumped["types"][CLUSTER]["last_nack"]["message"] == "bad cluster"
    assert node.type(LISTENER).state == "idle"

    status.stream_opened("envoy-1", "delta")  # a second, overlapping stream
    status.stream_closed("envoy-1")
    assert node.connected
    status.stream_closed("envoy-1")
    assert not node.connected and node.disconnected_at is not None
    assert [n.node_id for n in status.nodes()] == ["envoy-1"]
