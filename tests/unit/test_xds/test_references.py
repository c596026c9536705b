"""The reference walk finds exactly what visiting every nested message finds.

``references`` descends only into fields whose type can hold an ``SdsSecretConfig``, an HTTP
connection manager or an ``Any``. The oracle below is the generic walk it replaced (every
nested message, every known ``Any`` unpacked): both must agree on every translated case, and
a dangling reference in each place a resource can hold one must still fail the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from control_plane.xds.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    References,
    eds_names,
    references,
    resource_references,
)
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot
from control_plane.xds.translate import translate
from tests.support.xds import (
    complete,
    credential_injector,
    eds_cluster,
    rds_listener,
    route_table,
    sds,
    secret,
)
from tests.unit.test_xds.test_translate.cases import CASES, Case

_SDS = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def _oracle_walk(message: Message) -> Iterator[Message]:
    yield message
    if message.DESCRIPTOR.full_name == any_pb2.Any.DESCRIPTOR.full_name:
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(
                message.type_url.rpartition("/")[2]
            )
        except KeyError:
            return
        inner = message_factory.GetMessageClass(descriptor)()
        try:
            inner.ParseFromString(message.value)
        except Exception:
            return
        yield from _oracle_walk(inner)
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            children = [v for v in value.values() if isinstance(v, Message)]
        else:
            children = list(value) if field.is_repeated else [value]
        for child in children:
            yield from _oracle_walk(child)


def _oracle(resources: dict[str, dict[str, Any]]) -> References:
    endpoints: set[str] = set()
    routes: set[str] = set()
    secrets: set[str] = set()
    for type_url in (CLUSTER, LISTENER):
        for resource in resources.get(type_url, {}).values():
            if type_url == CLUSTER:
                endpoints |= eds_names(resource)
            for nested in _oracle_walk(resource):
                name = nested.DESCRIPTOR.full_name
                if name == _SDS and nested.name and nested.HasField("sds_config"):
                    if nested.sds_config.HasField("ads"):
                        secrets.add(nested.name)
                elif name == _HCM and type_url == LISTENER:
                    if nested.WhichOneof("route_specifier") == "rds":
                        if nested.rds.config_source.HasField("ads"):
                            routes.add(nested.rds.route_config_name)
    return References(frozenset(endpoints), frozenset(routes), frozenset(secrets))


def _translated(case: Case) -> dict[str, dict[str, Any]]:
    return translate(case.integrations(), case.secrets, case.options).resources


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_walk_agrees_with_the_generic_walk(case: Case) -> None:
    resources = _translated(case)
    assert references(resources) == _oracle(resources)
    for type_url in (CLUSTER, LISTENER):
        for name, message in resources[type_url].items():
            one = {type_url: {name: message}}
            assert references(one) == _oracle(one) == resource_references(type_url, message)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_dangling_reference_of_a_case_is_caught(case: Case) -> None:
    resources = _translated(case)
    refs = references(resources)
    for type_url, names in ((ENDPOINT, refs.endpoints), (ROUTE, refs.routes)):
        for name in names:
            partial = {t: dict(r) for t, r in resources.items()}
            del partial[type_url][name]
            with pytest.raises(InconsistentSnapshot) as raised:
                Snapshot.build(partial)
            assert raised.value.missing == {type_url: frozenset({name})}
    for name in refs.secrets:
        partial = {t: dict(r) for t, r in resources.items()}
        del partial[SECRET][name]
        with pytest.raises(InconsistentSnapshot) as raised:
            Snapshot.build(partial)
        assert raised.value.missing == {SECRET: frozenset({name})}


Place = tuple[str, str, str, dict[str, dict[str, Any]]]


def _places() -> Iterator[Place]:
    """(place, type URL, dangling name, resources) for each place a reference can be."""

    def base() -> dict[str, dict[str, Any]]:
        return complete()

    # cluster: upstream HTTP filter (credential injector) in typed_extension_protocol_options
    resources = base()
    options = http_protocol_options_pb2.HttpProtocolOptions(
        http_filters=[credential_injector("k1")]
    )
    packed = resources[CLUSTER]["stripe"].typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    packed.Pack(options)
    yield "cluster upstream filter", SECRET, "k1", resources
    # cluster: transport socket validation context over SDS
    resources = base()
    tls = tls_pb2.UpstreamTlsContext()
    tls.common_tls_context.validation_context_sds_secret_config.CopyFrom(sds("ca1"))
    resources[CLUSTER]["stripe"].transport_socket.typed_config.Pack(tls)
    yield "cluster validation context", SECRET, "ca1", resources
    # cluster: transport socket match (per-endpoint TLS)
    resources = base()
    match = resources[CLUSTER]["stripe"].transport_socket_matches.add(name="m")
    tls = tls_pb2.UpstreamTlsContext()
    tls.common_tls_context.tls_certificate_sds_secret_configs.append(sds("m1"))
    match.transport_socket.typed_config.Pack(tls)
    yield "cluster transport socket match", SECRET, "m1", resources
    # cluster: an Any in typed filter metadata (any Any is unpacked)
    resources = base()
    resources[CLUSTER]["stripe"].metadata.typed_filter_metadata["x"].Pack(sds("meta1"))
    yield "cluster typed metadata", SECRET, "meta1", resources
    # listener: HTTP filter of the connection manager
    resources = base()
    resources[LISTENER]["l1"] = rds_listener("l1", "stripe-routes", [credential_injector("k2")])
    yield "listener http filter", SECRET, "k2", resources
    # listener: downstream TLS on a filter chain
    resources = base()
    listener = rds_listener("l2", "stripe-routes", port=10002)
    downstream = tls_pb2.DownstreamTlsContext()
    downstream.common_tls_context.tls_certificate_sds_secret_configs.append(sds("d1"))
    listener.filter_chains[0].transport_socket.typed_config.Pack(downstream)
    resources[LISTENER]["l2"] = listener
    yield "listener downstream tls", SECRET, "d1", resources
    # listener: the default filter chain's connection manager names a route table
    resources = base()
    listener = listener_pb2.Listener(name="l3")
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="l3")
    hcm.rds.route_config_name = "r3"
    hcm.rds.config_source.ads.SetInParent()
    listener.default_filter_chain.filters.append(
        listener_components_pb2.Filter(name="hcm", typed_config=any_pb2.Any())
    )
    listener.default_filter_chain.filters[0].typed_config.Pack(hcm)
    resources[LISTENER]["l3"] = listener
    yield "listener default filter chain", ROUTE, "r3", resources
    # listener: a secret in a listener filter's Any config
    resources = base()
    listener = rds_listener("l4", "stripe-routes", port=10004)
    listener.listener_filters.add(name="f").typed_config.Pack(sds("lf1"))
    resources[LISTENER]["l4"] = listener
    yield "listener filter", SECRET, "lf1", resources
    # Any nested in an Any nested in an Any (typed metadata of a filter chain)
    resources = base()
    listener = rds_listener("l5", "stripe-routes", port=10005)
    outer = base_pb2.Metadata()
    outer.typed_filter_metadata["y"].Pack(sds("deep1"))
    listener.filter_chains[0].metadata.typed_filter_metadata["z"].Pack(outer)
    resources[LISTENER]["l5"] = listener
    yield "nested Any metadata", SECRET, "deep1", resources


@pytest.mark.parametrize("place", list(_places()), ids=lambda p: p[0])
def test_dangling_reference_in_each_place_is_caught(place: Place) -> None:
    _, type_url, name, resources = place
    assert references(resources) == _oracle(resources)
    with pytest.raises(InconsistentSnapshot) as raised:
        Snapshot.build(resources)
    assert raised.value.missing == {type_url: frozenset({name})}
    resources[type_url][name] = route_table(name, "stripe") if type_url == ROUTE else secret(name)
    assert Snapshot.build(resources).consistent()


def test_secret_in_a_cluster_hcm_counts_but_its_route_table_does_not() -> None:
    # As before: an HCM names route tables only in a listener; its secrets count anywhere.
    cluster = eds_cluster("c")
    hcm = hcm_pb2.HttpConnectionManager(http_filters=[credential_injector("k3")])
    hcm.rds.route_config_name = "nowhere"
    hcm.rds.config_source.ads.SetInParent()
    cluster.typed_extension_protocol_options["x"].Pack(hcm)
    found = references(
        {CLUSTER: {"c": cluster_pb2.Cluster.FromString(cluster.SerializeToString())}}
    )
    assert found == References(frozenset({"c"}), frozenset(), frozenset({"k3"}))
    assert found == _oracle({CLUSTER: {"c": cluster}})
