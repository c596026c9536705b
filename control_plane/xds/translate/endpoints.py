"""``ClusterLoadAssignment`` resources (EDS) for ``discovery: consul`` integrations.

Hostname and IP upstreams carry their single endpoint inline in the cluster; only service
catalog upstreams change membership at run time and go through EDS, so a Consul update
re-sends one small assignment instead of the cluster (which would reset its connection
pools and outlier state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

__all__ = ["load_assignment"]


def load_assignment(cluster: str, endpoints: Sequence[tuple[str, int]]) -> Any:
    """All ``(host, port)`` pairs as one locality, in the order given (deterministic)."""
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(
                                    address=host, port_value=port
                                )
                            )
                        )
                    )
                    for host, port in endpoints
                ]
            )
        ],
    )
