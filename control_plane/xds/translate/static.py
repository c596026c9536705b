"""Render translated resources as a complete *static* Envoy config.

For ``integration-service render --format envoy``: a config that runs without a control
plane. The ADS indirections are resolved in place: RDS route tables are inlined into their
HTTP connection managers, EDS clusters become ``STATIC`` with their assignment inlined, and
every ``SdsSecretConfig`` loses its ``sds_config`` -- an SDS reference without a config
source names a secret in ``static_resources.secrets``.
"""

from __future__ import annotations

from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from control_plane.xds.translate.messages import pack
from control_plane.xds.translate.options import Resources

__all__ = ["render_static_bootstrap"]

_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_SDS = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig"


def _unpack(packed: Any) -> Message:
    name = packed.type_url.rpartition("/")[2]
    descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    message: Message = message_factory.GetMessageClass(descriptor)()
    packed.Unpack(message)
    return message


def _inline(message: Any, routes: dict[str, Message]) -> None:
    """Resolve SDS/RDS references in ``message`` (recursively, through ``Any``)."""
    full_name = message.DESCRIPTOR.full_name
    if full_name == _SDS:
        message.ClearField("sds_config")
        return
    if full_name == _HCM and message.WhichOneof("route_specifier") == "rds":
        route = routes[message.rds.route_config_name]
        message.route_config.CopyFrom(route)  # setting the oneof clears rds
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            children = [v for v in value.values() if isinstance(v, Message)]
        elif field.is_repeated:
            children = list(value)
        else:
            children = [value]
        for child in children:
            if child.DESCRIPTOR.full_name == any_pb2.Any.DESCRIPTOR.full_name:
                inner = _unpack(child)
                _inline(inner, routes)
                child.CopyFrom(pack(inner))
            else:
                _inline(child, routes)


def _copy(message: Message) -> Any:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def render_static_bootstrap(resources: Resources, admin_port: int) -> dict[str, Any]:
    """A full static Envoy config (as a JSON-ready dict) serving ``resources``."""
    routes = resources.get(ROUTE, {})
    endpoints = resources.get(ENDPOINT, {})
    static = bootstrap_pb2.Bootstrap.StaticResources()
    for name in sorted(resources.get(CLUSTER, {})):
        cluster = _copy(resources[CLUSTER][name])
        if cluster.type == cluster_pb2.Cluster.EDS:
            service = cluster.eds_cluster_config.service_name or cluster.name
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.STATIC
            cluster.load_assignment.CopyFrom(endpoints[service])
        _inline(cluster, routes)
        static.clusters.append(cluster)
    for name in sorted(resources.get(LISTENER, {})):
        listener = _copy(resources[LISTENER][name])
        _inline(listener, routes)
        static.listeners.append(listener)
    secrets = resources.get(SECRET, {})
    static.secrets.extend(_copy(secrets[name]) for name in sorted(secrets))
    bootstrap = bootstrap_pb2.Bootstrap(
        # Loopback only: the admin API can drain listeners and dump config (with secrets).
        admin=bootstrap_pb2.Admin(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=admin_port)
            )
        ),
        static_resources=static,
    )
    result: dict[str, Any] = json_format.MessageToDict(bootstrap, preserving_proto_field_name=True)
    return result
