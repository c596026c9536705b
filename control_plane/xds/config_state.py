"""What Envoy runs, derived in one place: the configuration state of the node and of one
integration on it.

Readiness (``/health/ready``), ``GET /integrations/{id}/status`` and the operations that
wait for Envoy (cache clear, circuit-breaker reset, through
:meth:`~control_plane.xds.cache.XdsStatus.wait_acked`) all read it from here, so they
cannot disagree. The rule per set of xDS types: ``nacked`` when any type's latest response
was rejected, ``acked`` when every type answered runs what it was sent, else ``pending``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from control_plane.model import Integration
from control_plane.registry.workloads import Workload
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import PipelineState
from control_plane.xds.resources import CLUSTER, LISTENER
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.status import NodeStatus, TypeState

__all__ = [
    "ConfigState",
    "combined_state",
    "integration_config",
    "integration_nodes",
    "node_config",
    "shared_config",
]

ConfigState = Literal["pending", "acked", "nacked"]


def combined_state(states: Iterable[TypeState]) -> ConfigState:
    """One state for several types (``idle`` ones excluded by the caller)."""
    listed = list(states)
    if any(s == "nacked" for s in listed):
        return "nacked"
    if listed and all(s == "acked" for s in listed):
        return "acked"
    return "pending"


def node_config(cache: SnapshotCache, node_id: str, pipeline: PipelineState) -> dict[str, object]:
    """Readiness of the node's configuration: pushed, connected, every type ACKed, and no
    resource of the current snapshot refused (a delta ACK of a later response does not
    make an earlier, rejected listener run)."""
    if pipeline.error:
        return {"ok": False, "detail": f"configuration not pushed: {pipeline.error}"}
    node = cache.status.get(node_id)
    if node is None or not node.connected:
        return {"ok": False, "detail": "Envoy is not connected to the xDS server"}
    states = {t.split(".")[-1]: s.state for t, s in node.types.items() if s.state != "idle"}
    refused = _refused(cache, node_id)
    ok = combined_state(states.values()) == "acked" and not refused
    out: dict[str, object] = {"ok": ok, "version": pipeline.snapshot_version, "types": states}
    if refused:
        out["detail"] = "Envoy refused " + "; ".join(
            f"{kind} {name!r}: {message}" for kind, name, message in refused
        )
    return out


def _refused(cache: SnapshotCache, node_id: str) -> list[tuple[str, str, str]]:
    """(type, name, Envoy's message) of each current resource the node refused."""
    snapshot, node = cache.snapshot, cache.status.get(node_id)
    if snapshot is None or node is None:
        return []
    out = []
    for type_url, status in sorted(node.types.items()):
        current = snapshot.versions.get(type_url, {})
        for name, nack in sorted(status.rejected.items()):
            if current.get(name) == nack.version:
                out.append((type_url.split(".")[-1], name, nack.message))
    return out


def _resource_states(
    snapshot: Snapshot | None, node: NodeStatus | None, item: Integration
) -> tuple[str, dict[str, str | None], dict[str, Any]]:
    """The integration's state on one node: its own cluster and listener, at the versions
    ``snapshot`` holds, as the node answered for each of them."""
    expected = {
        "cluster": snapshot.resource_version(CLUSTER, item.id) if snapshot else None,
        "listener": snapshot.resource_version(LISTENER, item.id) if snapshot else None,
    }
    types: dict[str, Any] = {}
    overall: str = "pending"
    if not item.enabled:
        overall = "disabled"
    elif node is not None:
        states: list[TypeState] = []
        for type_url, label in ((CLUSTER, "cluster"), (LISTENER, "listener")):
            type_status = node.types.get(type_url)
            if type_status is None:
                continue
            types[label] = type_status.as_dict()
            state = type_status.resource_state(item.id, expected[label])
            types[label]["resource_state"] = state
            refused = type_status.rejected.get(item.id)
            if state == "nacked" and refused is not None:
                types[label]["resource_nack"] = refused.message
            states.append(state)
        overall = combined_state(states)
        if overall == "acked" and (snapshot is None or CLUSTER not in node.types):
            overall = "pending"
    return overall, expected, types


def integration_config(
    cache: SnapshotCache, node_id: str, item: Integration, pipeline: PipelineState
) -> dict[str, Any]:
    """The ``config`` block of an integration's status: its resources' versions in the
    current snapshot and what the node answered for the cluster and listener types."""
    node = cache.status.get(node_id)
    overall, expected, types = _resource_states(cache.snapshot, node, item)
    return {
        "state": overall,
        "snapshot_version": pipeline.snapshot_version,
        "resource_versions": expected,
        "node": {"id": node_id, "connected": bool(node and node.connected)},
        "types": types,
        "error": pipeline.error,
        "warnings": [w for w in pipeline.warnings if item.id in w],
    }


def integration_nodes(
    cache: SnapshotCache, item: Integration, workloads: Sequence[Workload]
) -> dict[str, Any]:
    """Shared topology: every node whose workload should run ``item``, with what it runs.

    ``nodes`` lists each connected node (and each disconnected one still remembered) with
    its ACKed versions or Envoy's NACK text; ``lagging`` names the connected ones that do
    not run the current versions yet."""
    runs = {w.name for w in workloads if w.may_run(item)}
    nodes: list[dict[str, Any]] = []
    for node in cache.status.nodes():
        if node.workload not in runs:
            continue
        snapshot = cache.workload_snapshot(node.workload)
        state, expected, types = _resource_states(snapshot, node, item)
        nack = next((t["resource_nack"] for t in types.values() if "resource_nack" in t), None)
        nodes.append(
            {
                "node_id": node.node_id.split("/", 1)[-1],
                "workload": node.workload,
                "identity": node.identity,
                "connected": node.connected,
                "state": state if node.connected else "disconnected",
                "resource_versions": expected,
                "acked_versions": {label: t.get("acked_version") for label, t in types.items()},
                "nack": nack,
            }
        )
    connected = [n for n in nodes if n["connected"]]
    return {
        "workloads": sorted(runs),
        "nodes": nodes,
        "connected": len(connected),
        "acked": sum(1 for n in connected if n["state"] == "acked"),
        "lagging": [f"{n['workload']}/{n['node_id']}" for n in connected if n["state"] != "acked"],
    }


def shared_config(cache: SnapshotCache, pipeline: PipelineState) -> dict[str, object]:
    """Readiness of a shared-topology replica: it can serve (the configuration is built,
    not refused by the pipeline). Nodes that lag show in each integration's status, not
    here: one slow application pod must not take the control plane out of its Service."""
    if pipeline.error:
        return {"ok": False, "detail": f"configuration not built: {pipeline.error}"}
    if cache.snapshot is None:
        return {"ok": False, "detail": "no configuration built yet"}
    connected = sum(1 for n in cache.status.nodes() if n.connected)
    return {"ok": True, "version": pipeline.snapshot_version, "connected_nodes": connected}
