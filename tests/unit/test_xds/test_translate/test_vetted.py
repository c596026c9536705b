"""Vetted resolution in the translator: an EDS cluster fed the accepted addresses, TLS and
the Host rewrite still on the name; the ``resolution`` field in the loader and schema."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped]

from control_plane.model import Integration, to_document
from control_plane.registry.loader import (
    integration_from_document,
    parse_integrations_text,
    validate_integration_document,
)
from control_plane.xds.translate import (
    CLUSTER,
    ENDPOINT,
    ROUTE,
    TranslateOptions,
    render_static_bootstrap,
    translate,
)
from control_plane.xds.translate.endpoints import vetted_name

NAME = "api.vetted.example"
DOC: dict[str, Any] = {
    "id": "pay",
    "kind": "http",
    "upstream": {"url": f"https://{NAME}", "tls": {"ca_bundle": "env:CA_PEM"}},
    "listen_port": 11001,
    "credentials": {"api_key": "env:PAY_KEY"},
}
SECRETS = {"env:PAY_KEY": "sk_test_vetted", "env:CA_PEM": "-----BEGIN CERTIFICATE-----"}


def _registered(doc: dict[str, Any] = DOC) -> Integration:
    return integration_from_document(doc, source="registered")


def _json(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def _lb_addresses(assignment: Any) -> list[tuple[str, int]]:
    return [
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for locality in assignment.endpoints
        for lb in locality.lb_endpoints
    ]


def test_registered_names_are_vetted_and_declared_ones_envoy_resolved() -> None:
    assert _registered().upstream.resolution == "vetted"
    assert vetted_name(_registered()) == NAME
    declared = integration_from_document(DOC, source="declared")
    assert declared.upstream.resolution == "envoy"
    assert vetted_name(declared) is None
    opted = {**DOC, "upstream": {**DOC["upstream"], "resolution": "vetted"}}
    assert integration_from_document(opted, source="declared").upstream.resolution == "vetted"
    # Addresses and Consul are never vetted: nothing to resolve, or the catalog decides.
    ip = {**DOC, "upstream": "https://127.0.0.2"}
    assert vetted_name(_registered(ip)) is None
    consul = {**DOC, "upstream": {"host": NAME, "discovery": "consul"}}
    assert vetted_name(_registered(consul)) is None
    # The name is matched as DNS does: case and a trailing dot do not count.
    upper = {**DOC, "upstream": {"host": "API.Vetted.Example.", "scheme": "https"}}
    assert vetted_name(_registered(upper)) == NAME


def test_api_documents_cannot_choose_envoy_resolution() -> None:
    doc = {**DOC, "upstream": {**DOC["upstream"], "resolution": "envoy"}}
    problems = validate_integration_document(doc)
    assert [p.pointer for p in problems] == ["/upstream/resolution"]
    assert "declared" in problems[0].message
    bad = {**DOC, "upstream": {**DOC["upstream"], "resolution": "system"}}
    assert any(p.pointer.startswith("/upstream") for p in validate_integration_document(bad))
    vetted = {**DOC, "upstream": {**DOC["upstream"], "resolution": "vetted"}}
    assert validate_integration_document(vetted) == []


def test_documents_round_trip_with_the_field_only_where_not_the_default() -> None:
    registered = to_document(_registered(), with_meta=False)
    assert "resolution" not in registered["upstream"]
    assert integration_from_document(registered, source="registered") == _registered()
    text = f"""
integrations:
  - id: a
    kind: http
    upstream: {{url: "https://{NAME}", resolution: vetted}}
  - id: b
    kind: http
    upstream: "https://{NAME}"
"""
    a, b = parse_integrations_text(text, "<test>")
    assert to_document(a, with_meta=False)["upstream"]["resolution"] == "vetted"
    assert "resolution" not in to_document(b, with_meta=False)["upstream"]
    assert validate_integration_document(to_document(a, with_meta=False)) == []


def test_vetted_cluster_is_eds_with_the_accepted_addresses() -> None:
    options = TranslateOptions(resolved={NAME: ("127.0.0.2", "127.0.0.4")})
    result = translate([_registered()], SECRETS, options)
    cluster = result.resources[CLUSTER]["pay"]
    assert cluster.type == cluster.EDS
    assert cluster.eds_cluster_config.service_name == "pay"
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert not cluster.HasField("load_assignment"), "Envoy is given no name to resolve"
    assert cluster.dns_lookup_family == cluster.AUTO, "no DNS settings on an EDS cluster"
    assignment = result.resources[ENDPOINT]["pay"]
    assert assignment.cluster_name == "pay"
    assert _lb_addresses(assignment) == [("127.0.0.2", 443), ("127.0.0.4", 443)]
    assert result.warnings == []


def test_tls_and_host_rewrite_stay_on_the_name() -> None:
    vetted = translate([_registered()], SECRETS, TranslateOptions(resolved={NAME: ("127.0.0.2",)}))
    envoy = translate([integration_from_document(DOC, source="declared")], SECRETS)
    v_cluster, e_cluster = vetted.resources[CLUSTER]["pay"], envoy.resources[CLUSTER]["pay"]
    assert e_cluster.type == e_cluster.LOGICAL_DNS
    tls = _json(v_cluster.transport_socket.typed_config)
    assert tls["sni"] == NAME
    context = tls["common_tls_context"]["combined_validation_context"]
    san = context["default_validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"san_type": "DNS", "matcher": {"exact": NAME}}]
    # The transport socket, upstream filters and every other field are those of the
    # Envoy-resolved cluster: only how the hosts are found differs.
    for cluster in (v_cluster, e_cluster):
        for name in ("type", "load_assignment", "eds_cluster_config", "dns_lookup_family"):
            cluster.ClearField(name)
    assert v_cluster == e_cluster
    route = vetted.resources[ROUTE]["pay"].virtual_hosts[0].routes[0].route
    assert route.host_rewrite_literal == NAME, "the upstream sees its own Host"


def test_no_accepted_address_is_an_empty_assignment() -> None:
    result = translate([_registered()], SECRETS, TranslateOptions())
    assert _lb_addresses(result.resources[ENDPOINT]["pay"]) == []
    assert result.warnings == [f"pay: no vetted address for {NAME}; requests get 503"]


def test_tcp_kinds_get_every_accepted_address() -> None:
    doc = {"id": "db", "kind": "postgresql", "upstream": {"host": "db.vetted.example"}}
    item = integration_from_document({**doc, "listen_port": 11002}, source="registered")
    options = TranslateOptions(resolved={"db.vetted.example": ("127.0.0.3", "127.0.0.2")})
    result = translate([item], {}, options)
    assert result.resources[CLUSTER]["db"].type == result.resources[CLUSTER]["db"].EDS
    assert _lb_addresses(result.resources[ENDPOINT]["db"]) == [
        ("127.0.0.3", 5432),
        ("127.0.0.2", 5432),
    ]


def test_addresses_follow_the_name_not_the_id() -> None:
    """A host change never serves the old name's addresses, even for a moment."""
    moved = {**DOC, "upstream": {"url": "https://api.other.example"}}
    options = TranslateOptions(resolved={NAME: ("127.0.0.2",)})
    result = translate([_registered(moved)], SECRETS, options)
    assert _lb_addresses(result.resources[ENDPOINT]["pay"]) == []


def test_consul_and_addresses_are_unaffected() -> None:
    consul = _registered({**DOC, "upstream": {"host": NAME, "discovery": "consul"}})
    options = TranslateOptions(
        endpoints={"pay": [("127.0.0.9", 8443)]}, resolved={NAME: ("127.0.0.2",)}
    )
    result = translate([consul], SECRETS, options)
    assert _lb_addresses(result.resources[ENDPOINT]["pay"]) == [("127.0.0.9", 8443)]
    ip = translate([_registered({**DOC, "upstream": "https://127.0.0.2"})], SECRETS)
    assert ip.resources[CLUSTER]["pay"].type == ip.resources[CLUSTER]["pay"].STATIC


def test_static_render_inlines_the_vetted_assignment() -> None:
    options = TranslateOptions(resolved={NAME: ("127.0.0.2",)})
    resources = translate([_registered()], SECRETS, options).resources
    config = render_static_bootstrap(resources, 9901)
    (cluster,) = (c for c in config["static_resources"]["clusters"] if c["name"] == "pay")
    assert cluster["type"] == "STATIC"
    lb = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert lb["endpoint"]["address"]["socket_address"]["address"] == "127.0.0.2"
