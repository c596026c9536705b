"""What Envoy runs, derived in one place: the configuration state of the node and of one
integration on it.

Readiness (``/health/ready``), ``GET /integrations/{id}/status`` and the operations that
wait for Envoy (cache clear, circuit-breaker reset, through
:meth:`~control_plane.xds.cache.XdsStatus.wait_acked`) all read it from here, so they
cannot disagree. The rule per set of xDS types: ``nacked`` when any type's latest response
was rejected, ``acked`` when every type answered runs what it was sent, else ``pending``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from control_plane.model import Integration
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import PipelineState
from control_plane.xds.resources import CLUSTER, LISTENER
from control_plane.xds.status import TypeState

__all__ = ["ConfigState", "combined_state", "integration_config", "node_config"]

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


def integration_config(
    cache: SnapshotCache, node_id: str, item: Integration, pipeline: PipelineState
) -> dict[str, Any]:
    """The ``config`` block of an integration's status: its resources' versions in the
    current snapshot and what the node answered for the cluster and listener types."""
    snapshot = cache.snapshot
    node = cache.status.get(node_id)
    expected = {
        "cluster": snapshot.resource_version(CLUSTER, item.id) if snapshot else None,
        "listener": snapshot.resource_version(LISTENER, item.id) if snapshot else None,
    }
    types: dict[str, Any] = {}
    overall: str = "pending"
    if not item.enabled:
        overall = "disabled"
    elif node is not None:
        # Per resource: the integration's own cluster and listener, at the versions the
        # current snapshot holds, as the node answered for each of them.
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
    return {
        "state": overall,
        "snapshot_version": pipeline.snapshot_version,
        "resource_versions": expected,
        "node": {"id": node_id, "connected": bool(node and node.connected)},
        "types": types,
        "error": pipeline.error,
        "warnings": [w for w in pipeline.warnings if item.id in w],
    }
