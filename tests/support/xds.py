"""Envoy resource builders shared by the xDS tests (protobuf messages, never YAML text)."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, extension_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.credential_injector.v3 import credential_injector_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.http.injected_credentials.generic.v3 import generic_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

__all__ = [
    "ads",
    "assignment",
    "complete",
    "credential_injector",
    "eds_cluster",
    "rds_listener",
    "route_table",
    "sds",
    "secret",
    "typed",
]


def ads() -> Any:
    return config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())


def sds(name: str) -> Any:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads())


def typed(name: str, message: Any) -> Any:
    config = extension_pb2.TypedExtensionConfig(name=name)
    config.typed_config.Pack(message)
    return config


def eds_cluster(name: str, service_name: str = "", tls_sds: str | None = None) -> Any:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.CopyFrom(ads())
    cluster.eds_cluster_config.service_name = service_name
    if tls_sds is not None:
        tls = tls_pb2.UpstreamTlsContext(sni="api.example.com")
        tls.common_tls_context.tls_certificate_sds_secret_configs.append(sds(tls_sds))
        cluster.transport_socket.name = "envoy.transport_sockets.tls"
        cluster.transport_socket.typed_config.Pack(tls)
    return cluster


def assignment(name: str, port: int = 8080) -> Any:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    address = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    address.address, address.port_value = "127.0.0.1", port
    return cla


def rds_listener(
    name: str, route: str, http_filters: list[Any] | None = None, port: int = 10001
) -> Any:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    hcm.rds.route_config_name = route
    hcm.rds.config_source.CopyFrom(ads())
    for http_filter in http_filters or []:
        hcm.http_filters.append(http_filter)
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(name=name)
    address = listener.address.socket_address
    address.address, address.port_value = "127.0.0.1", port
    network_filter = listener.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    )
    network_filter.typed_config.Pack(hcm)
    return listener


def credential_injector(secret_name: str) -> Any:
    """An HTTP filter that sets ``Authorization`` from an SDS generic secret."""
    generic = generic_pb2.Generic(credential=sds(secret_name))
    injector = credential_injector_pb2.CredentialInjector(
        credential=typed("envoy.http.injected_credentials.generic", generic)
    )
    http_filter = hcm_pb2.HttpFilter(name="envoy.filters.http.credential_injector")
    http_filter.typed_config.Pack(injector)
    return http_filter


def route_table(name: str, cluster: str) -> Any:
    table = route_pb2.RouteConfiguration(name=name)
    host = table.virtual_hosts.add(name=name, domains=["*"])
    route = host.routes.add()
    route.match.prefix = "/"
    route.route.cluster = cluster
    return table


def secret(name: str, value: str = "Bearer token") -> Any:
    result = secret_pb2.Secret(name=name)
    result.generic_secret.secret.inline_string = value
    return result


def complete() -> dict[str, dict[str, Any]]:
    return {
        CLUSTER: {"stripe": eds_cluster("stripe", tls_sds="stripe-cert")},
        ENDPOINT: {"stripe": assignment("stripe")},
        LISTENER: {"stripe": rds_listener("stripe", "stripe-routes")},
        ROUTE: {"stripe-routes": route_table("stripe-routes", "stripe")},
        SECRET: {"stripe-cert": secret("stripe-cert")},
    }
