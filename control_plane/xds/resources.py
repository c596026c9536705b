"""xDS resource types: type URLs, the ADS push order and the names one resource references.

This is the bottom of the three xDS layers (resources -> cache -> server). It is pure: it
knows protobuf messages and names, nothing about streams or nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

# protobuf ships no type information here: its types are Any to mypy.
from google.protobuf import any_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

__all__ = [
    "ADS_ORDER",
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "ROUTE",
    "SECRET",
    "WILDCARD_TYPES",
    "References",
    "eds_names",
    "message_type_url",
    "references",
    "resource_name",
]

_PREFIX: Final = "type.googleapis.com/"
CLUSTER: Final = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE: Final = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET: Final = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# The order in which one snapshot change is pushed over the single ADS stream. The xDS
# protocol leaves each type eventually consistent on its own; to avoid dropping traffic
# during an update the management server must sequence them: CDS first, then EDS for those
# clusters, then LDS (listeners may route to the new clusters), then RDS for the new
# listeners' route tables. SDS comes last: a cluster or listener that names a secret stays
# warming until the secret arrives, and Envoy only subscribes to a secret once it has seen
# the resource naming it. Clusters and endpoints no longer referenced are removed in the
# same pass, which is safe because the listeners/routes that used them were replaced first.
# https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
ADS_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# CDS and LDS are "global" discovery: Envoy subscribes with no names (wildcard) and the
# server answers with every resource of the type. EDS/RDS/SDS are always asked for by name.
WILDCARD_TYPES: Final = frozenset({CLUSTER, LISTENER})

_HCM: Final = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_SDS_CONFIG: Final = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig"

# Extensions whose Any-packed configs may name a route table or a secret. They are imported
# lazily (no work at import time) so their descriptors are in the default pool before the
# first walk; an Any of any other type is unpacked too when its module happens to be loaded.
_EXTENSION_MODULES: Final = (
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
    "envoy.extensions.filters.http.credential_injector.v3.credential_injector_pb2",
    "envoy.extensions.http.injected_credentials.generic.v3.generic_pb2",
    "envoy.extensions.http.injected_credentials.oauth2.v3.oauth2_pb2",
)
_loaded = False


def _load_extensions() -> None:
    global _loaded
    if _loaded:
        return
    import importlib

    for module in _EXTENSION_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # an older xds-protos without this extension: nothing to find
            continue
    _loaded = True


def message_type_url(message: Message) -> str:
    """The type URL a message is packed under in an ``Any``."""
    return _PREFIX + str(message.DESCRIPTOR.full_name)


def resource_name(message: Message) -> str:
    """The xDS name of a resource: ``cluster_name`` for endpoints, ``name`` otherwise."""
    if message.DESCRIPTOR.full_name == ENDPOINT.removeprefix(_PREFIX):
        return str(message.cluster_name)
    return str(message.name)


@dataclass(frozen=True, slots=True)
class References:
    """Names a set of resources needs from other xDS types before Envoy can use them."""

    endpoints: frozenset[str] = field(default_factory=frozenset)
    routes: frozenset[str] = field(default_factory=frozenset)
    secrets: frozenset[str] = field(default_factory=frozenset)

    def by_type(self) -> dict[str, frozenset[str]]:
        return {ENDPOINT: self.endpoints, ROUTE: self.routes, SECRET: self.secrets}


def _is_ads(config_source: Any) -> bool:
    # Only names delivered over our ADS stream are our responsibility. A secret without an
    # sds_config is a static bootstrap secret; one with another config source is served by
    # someone else.
    return bool(config_source.HasField("ads"))


def _unpack(packed: Any) -> Message | None:
    """Unpack an ``Any`` whose type is known to the default pool; None otherwise."""
    full_name = packed.type_url.rpartition("/")[2]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return None
    message = message_factory.GetMessageClass(descriptor)()
    try:
        message.ParseFromString(packed.value)
    except Exception:  # a malformed extension config must not break the snapshot check
        return None
    return message


def _walk(message: Message) -> Iterator[Message]:
    """Every message nested in ``message``, including inside (known) ``Any`` fields."""
    yield message
    if message.DESCRIPTOR.full_name == any_pb2.Any.DESCRIPTOR.full_name:
        inner = _unpack(message)
        if inner is not None:
            yield from _walk(inner)
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            values = [v for v in value.values() if isinstance(v, Message)]
        elif descriptor.is_repeated:
            values = list(value)
        else:
            values = [value]
        for child in values:
            yield from _walk(child)


def eds_names(cluster: Any) -> set[str]:
    """The ClusterLoadAssignment an EDS cluster fetches over ADS (none for other clusters).

    It is named by ``eds_cluster_config.service_name``, falling back to the cluster name.
    """
    if cluster.WhichOneof("cluster_discovery_type") != "type" or cluster.type != cluster.EDS:
        return set()
    eds = cluster.eds_cluster_config
    if eds.HasField("eds_config") and not _is_ads(eds.eds_config):
        return set()
    return {eds.service_name or cluster.name}


def references(resources: dict[str, dict[str, Message]]) -> References:
    """Names referenced by ``resources`` (type URL -> name -> message).

    Tolerant by design: it walks every nested message and every ``Any`` it can unpack, so
    an HCM in any filter chain, a TLS context in any transport socket and an SDS secret in
    any extension (e.g. ``credential_injector`` generic/OAuth2 credentials) are found.
    """
    _load_extensions()
    endpoints: set[str] = set()
    routes: set[str] = set()
    secrets: set[str] = set()
    for type_url in (CLUSTER, LISTENER):
        for resource in resources.get(type_url, {}).values():
            if type_url == CLUSTER:
                endpoints |= eds_names(resource)
            for nested in _walk(resource):
                full_name = nested.DESCRIPTOR.full_name
                if full_name == _SDS_CONFIG:
                    sds: Any = nested
                    if sds.name and sds.HasField("sds_config") and _is_ads(sds.sds_config):
                        secrets.add(sds.name)
                elif full_name == _HCM and type_url == LISTENER:
                    hcm: Any = nested
                    if hcm.WhichOneof("route_specifier") == "rds":
                        if _is_ads(hcm.rds.config_source):
                            routes.add(hcm.rds.route_config_name)
    return References(frozenset(endpoints), frozenset(routes), frozenset(secrets))
