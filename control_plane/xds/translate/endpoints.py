"""``ClusterLoadAssignment`` resources (EDS): ``discovery: consul`` and vetted names.

IP upstreams, and host names Envoy resolves itself (``resolution: envoy``), carry their
endpoint inline in the cluster. Service catalog upstreams change membership at run time and
go through EDS, so a Consul update re-sends one small assignment instead of the cluster
(which would reset its connection pools and outlier state). So do host names under vetted
resolution: the control plane resolves them, keeps the addresses the SSRF rules accept
(``control_plane.discovery.dns``) and serves exactly those; Envoy never resolves the name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from control_plane.model import Integration
from control_plane.xds.translate.messages import is_ip
from control_plane.xds.translate.options import TranslateOptions

__all__ = [
    "FLEET_CLUSTER",
    "fleet_assignment",
    "load_assignment",
    "vetted_assignment",
    "vetted_name",
]

# The bootstrap's local cluster (envoy/bootstrap.yaml): the fleet whose size divides a
# ``scope: fleet`` rate limit. An underscore: never an integration id (a DNS label).
FLEET_CLUSTER = "integration_fleet"


def load_assignment(cluster: str, endpoints: Sequence[tuple[str, int]]) -> Any:
    """All ``(host, port)`` pairs as one locality, in the order given (deterministic)."""
    # Filled in place: a message given to a constructor is copied, once per level.
    result = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster)
    locality = result.endpoints.add()
    for host, port in endpoints:
        locality.lb_endpoints.add().endpoint.address.socket_address.CopyFrom(
            address_pb2.SocketAddress(address=host, port_value=port)
        )
    return result


def fleet_assignment(members: int) -> Any:
    """The fleet's membership as Envoy counts it: one endpoint per live member (at least
    this node). Placeholders on 127.0.0.1, ports 1..N: nothing is ever routed to them,
    Envoy's local_cluster_rate_limit only counts them."""
    return load_assignment(FLEET_CLUSTER, [("127.0.0.1", n + 1) for n in range(max(1, members))])


def vetted_name(item: Integration) -> str | None:
    """The host name the control plane resolves for ``item`` (lower case, no trailing dot),
    or None: Envoy resolves it (``resolution: envoy``), it is an address, or Consul."""
    up = item.upstream
    if up.resolution != "vetted" or up.discovery == "consul":
        return None
    name = up.host.strip().rstrip(".").lower()
    return None if not name or is_ip(name.strip("[]")) else name


def vetted_assignment(item: Integration, name: str, options: TranslateOptions) -> Any:
    """The accepted addresses of ``name`` at the integration's port (none: requests 503)."""
    return load_assignment(
        item.id, [(address, item.upstream.port) for address in options.resolved.get(name, ())]
    )
