"""xDS resource types: type URLs, the ADS push order and the names one resource references.

This is the bottom of the three xDS layers (resources -> cache -> server). It is pure: it
knows protobuf messages and names, nothing about streams or nodes.
"""

from __future__ import annotations

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
    "resource_references",
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


_type_urls: dict[type, str] = {}


def message_type_url(message: Message) -> str:
    """The type URL a message is packed under in an ``Any``."""
    cls = type(message)
    type_url = _type_urls.get(cls)
    if type_url is None:
        type_url = _type_urls[cls] = _PREFIX + str(message.DESCRIPTOR.full_name)
    return type_url


def resource_name(message: Message) -> str:
    """The xDS name of a resource: ``cluster_name`` for endpoints, ``name`` otherwise."""
    if message_type_url(message) == ENDPOINT:
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


# The walk visits only fields that can lead to a reference. Which fields those are is a
# property of the message *types*: a field is worth descending into when its type can
# (transitively) contain an SdsSecretConfig, an HCM or an Any (which may hold anything).
# Everything else (durations, wrappers, Struct, socket addresses, ...) cannot name a
# resource, so skipping it finds exactly what visiting every nested message finds.
_ANY: Final = any_pb2.Any.DESCRIPTOR.full_name
_SINGLE, _SINGLE_ANY, _REPEATED, _MAP = 0, 1, 2, 3
_NONE, _IS_SDS, _IS_HCM, _IS_ANY = 0, 1, 2, 3
_ROLES: Final = {_SDS_CONFIG: _IS_SDS, _HCM: _IS_HCM, _ANY: _IS_ANY}
# message type full name -> whether an SdsSecretConfig, HCM or Any can be nested in it
_reaches: dict[str, bool] = {}
# message class -> (its role, {field descriptor: how to descend} for the fields that reach)
_plans: dict[type, tuple[int, dict[Any, int]]] = {}
# type URL -> message class, for the Any types the default pool knows
_classes: dict[str, type] = {}


def _child_type(field_descriptor: Any) -> Any:
    """The message type a field holds (a map's value type), or None for scalars."""
    message_type = field_descriptor.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        return message_type.fields_by_name["value"].message_type
    return message_type


def _compute_reaches(root: Any) -> None:
    # Every type reachable from ``root`` that is not decided yet, then a fixpoint: a type
    # reaches a target if it is one or one of its fields' types reaches one (types recurse).
    pending: dict[str, list[Any]] = {}
    queue = [root]
    while queue:
        descriptor = queue.pop()
        if descriptor.full_name in _reaches or descriptor.full_name in pending:
            continue
        children = [c for c in map(_child_type, descriptor.fields) if c is not None]
        pending[descriptor.full_name] = children
        queue.extend(children)
    found = {n for n in pending if n in _ROLES}
    changed = True
    while changed:
        changed = False
        for name, children in pending.items():
            if name not in found and any(
                c.full_name in found or _reaches.get(c.full_name, False) for c in children
            ):
                found.add(name)
                changed = True
    for name in pending:
        _reaches[name] = name in found


def _plan(cls: type) -> tuple[int, dict[Any, int]]:
    descriptor: Any = cls.DESCRIPTOR  # type: ignore[attr-defined]
    fields: dict[Any, int] = {}
    for field_descriptor in descriptor.fields:
        child = _child_type(field_descriptor)
        if child is None:
            continue
        if child.full_name not in _reaches:
            _compute_reaches(child)
        if not _reaches[child.full_name]:
            continue
        if field_descriptor.message_type.GetOptions().map_entry:
            fields[field_descriptor] = _MAP
        elif field_descriptor.is_repeated:
            fields[field_descriptor] = _REPEATED
        elif child.full_name == _ANY:  # unpacked as it is found
            fields[field_descriptor] = _SINGLE_ANY
        else:
            fields[field_descriptor] = _SINGLE
    plan = (_ROLES.get(descriptor.full_name, _NONE), fields)
    _plans[cls] = plan
    return plan


def _unpack(packed: Any) -> Message | None:
    """Unpack an ``Any`` whose type is known to the default pool and can hold a reference;
    None otherwise."""
    cls = _classes.get(packed.type_url)
    if cls is None:
        full_name = packed.type_url.rpartition("/")[2]
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
        except KeyError:  # not cached: the type's module may be imported later
            return None
        cls = _classes[packed.type_url] = message_factory.GetMessageClass(descriptor)
    role, fields = _plans.get(cls) or _plan(cls)
    if role == _NONE and not fields:  # nothing in it can name a resource: no need to parse
        return None
    message = cls()
    try:
        message.ParseFromString(packed.value)
    except Exception:  # a malformed extension config must not break the snapshot check
        return None
    return message


def _collect(message: Message, secrets: set[str], routes: set[str] | None) -> None:
    """Add the secrets (and, unless ``routes`` is None, the route tables) that ``message``
    or any message nested in it (including inside known ``Any`` fields) names over ADS."""
    stack = [message]
    while stack:
        nested: Any = stack.pop()
        role, fields = _plans.get(type(nested)) or _plan(type(nested))
        if role == _IS_ANY:
            inner = _unpack(nested)
            if inner is not None:
                stack.append(inner)
            continue
        if role == _IS_SDS:
            if nested.name and nested.HasField("sds_config") and _is_ads(nested.sds_config):
                secrets.add(nested.name)
        elif role == _IS_HCM and routes is not None:
            if nested.WhichOneof("route_specifier") == "rds":
                if _is_ads(nested.rds.config_source):
                    routes.add(nested.rds.route_config_name)
        if not fields:
            continue
        for field_descriptor, value in nested.ListFields():
            how = fields.get(field_descriptor)
            if how is None:
                continue
            if how == _SINGLE:
                stack.append(value)
            elif how == _SINGLE_ANY:
                inner = _unpack(value)
                if inner is not None:
                    stack.append(inner)
            elif how == _REPEATED:
                stack.extend(value)
            else:
                stack.extend(value.values())


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

    Tolerant by design: it walks every nested message that can hold a reference and every
    ``Any`` it can unpack, so an HCM in any filter chain, a TLS context in any transport
    socket and an SDS secret in any extension (e.g. ``credential_injector`` generic/OAuth2
    credentials) are found.
    """
    endpoints: set[str] = set()
    routes: set[str] = set()
    secrets: set[str] = set()
    for type_url in (CLUSTER, LISTENER):
        for resource in resources.get(type_url, {}).values():
            found = resource_references(type_url, resource)
            endpoints |= found.endpoints
            routes |= found.routes
            secrets |= found.secrets
    return References(frozenset(endpoints), frozenset(routes), frozenset(secrets))


_NO_NAMES: Final[frozenset[str]] = frozenset()


def resource_references(type_url: str, resource: Message) -> References:
    """The names one resource of ``type_url`` references (only clusters and listeners
    reference others; a cluster's route tables are never read)."""
    if type_url not in (CLUSTER, LISTENER):
        return References()
    _load_extensions()
    secrets: set[str] = set()
    routes: set[str] | None = set() if type_url == LISTENER else None
    _collect(resource, secrets, routes)
    return References(
        frozenset(eds_names(resource)) if type_url == CLUSTER else _NO_NAMES,
        frozenset(routes) if routes else _NO_NAMES,
        frozenset(secrets),
    )
