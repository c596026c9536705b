"""Properties of the translated resources that must hold for every registry case."""

from __future__ import annotations

import ast
import base64
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]

from control_plane.model import CredentialRef
from control_plane.xds.resources import references
from control_plane.xds.translate import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    TranslateOptions,
    TranslateResult,
    render_static_bootstrap,
    translate,
)
from tests.unit.test_xds.test_translate.cases import (
    CASES,
    CONSUL_EDS,
    DISABLED,
    EXAMPLE_SECRETS,
    HTTP_PER_TENANT,
    REPO,
    STORAGE_FILE,
    TCP_REDIS,
    TLS_MTLS,
    Case,
    example_integrations,
)


def _result(case: Case) -> TranslateResult:
    return translate(case.integrations(), case.secrets, case.options)


def _example() -> TranslateResult:
    return translate(example_integrations(), EXAMPLE_SECRETS, TranslateOptions())


def _unpack(packed: Any) -> Any:
    return json_format.MessageToDict(packed, preserving_proto_field_name=True)


def _hcm(listener: Any) -> dict[str, Any]:
    result: dict[str, Any] = _unpack(listener.filter_chains[0].filters[0].typed_config)
    return result


def _filters(listener: Any) -> list[str]:
    return [f["name"] for f in _hcm(listener)["http_filters"]]


def _cluster_filters(cluster: Any) -> list[dict[str, Any]]:
    """The cluster's upstream HTTP filters (HttpProtocolOptions.http_filters)."""
    packed = cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    filters: list[dict[str, Any]] = _unpack(packed).get("http_filters", [])
    return filters


def _upstream_filters(cluster: Any) -> list[str]:
    return [f["name"] for f in _cluster_filters(cluster)]


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_no_secret_value_in_listeners_or_clusters(case: Case) -> None:
    result = _result(case)
    # The OAuth2 client id is a public identifier and a plain string in Envoy's API.
    values = [
        v.encode() if isinstance(v, str) else v
        for ref, v in case.secrets.items()
        if ref != "env:AUTH0_CLIENT_ID"
    ]
    for type_url in (CLUSTER, LISTENER, ROUTE, ENDPOINT):
        for message in result.resources[type_url].values():
            wire = message.SerializeToString()
            text = json_format.MessageToJson(message)
            for value in values:
                assert value not in wire
                assert value.decode() not in text
                assert base64.b64encode(value).decode() not in text


def test_secrets_are_sds_resources_named_by_id_and_slot() -> None:
    result = _example()
    assert sorted(result.resources[SECRET]) == [
        "stripe/api_key",
        "token/auth0",  # token mode: the minted token, never the client secret
        "weather-api/api_key",
    ]
    stripe = result.resources[SECRET]["stripe/api_key"]
    assert stripe.generic_secret.secret.inline_bytes == b"Bearer sk_test_golden"
    weather = result.resources[SECRET]["weather-api/api_key"]
    assert weather.generic_secret.secret.inline_bytes == b"weather-key-golden"


def test_tls_secrets_named_client_cert_and_ca() -> None:
    case = next(c for c in CASES if c.name == "tls_ca_mtls")
    secrets = _result(case).resources[SECRET]
    assert secrets["ledger/ca"].HasField("validation_context")
    assert secrets["ledger/client-cert"].HasField("tls_certificate")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_reference_resolves(case: Case) -> None:
    """What the snapshot's consistency check demands: named routes/secrets/EDS exist."""
    resources = _result(case).resources
    refs = references(resources)
    assert refs.routes <= set(resources[ROUTE])
    assert refs.secrets <= set(resources[SECRET])
    assert refs.endpoints <= set(resources[ENDPOINT])


def test_missing_secret_is_omitted_and_reported_without_value() -> None:
    secrets = {k: v for k, v in EXAMPLE_SECRETS.items() if k != "env:STRIPE_SECRET_KEY"}
    result = translate(example_integrations(), secrets, TranslateOptions())
    assert "stripe/api_key" not in result.resources[SECRET]
    assert "envoy.filters.http.credential_injector" not in _upstream_filters(
        result.resources[CLUSTER]["stripe"]
    )
    assert any("stripe" in w and "env:STRIPE_SECRET_KEY" in w for w in result.warnings)
    assert not any("sk_test" in w for w in result.warnings)
    refs = references(result.resources)
    assert refs.secrets <= set(result.resources[SECRET])


def test_missing_ca_bundle_falls_back_to_system_trust_store() -> None:
    result = translate(TLS_MTLS(), {}, TranslateOptions())
    assert result.resources[SECRET] == {}
    tls = _unpack(result.resources[CLUSTER]["ledger"].transport_socket.typed_config)
    context = tls["common_tls_context"]
    assert context["validation_context"]["trusted_ca"]["filename"].endswith(".crt")
    assert "tls_certificate_sds_secret_configs" not in context
    assert len([w for w in result.warnings if w.startswith("ledger:")]) == 3


# -- listeners and routes ---------------------------------------------------------------------


def test_listener_names_and_ports() -> None:
    listeners = translate(
        example_integrations(), EXAMPLE_SECRETS, TranslateOptions(listen_address="127.0.0.2")
    ).resources[LISTENER]
    ports = {
        name: (m.address.socket_address.address, m.address.socket_address.port_value)
        for name, m in listeners.items()
        if not name.endswith("_cache_fill")
    }
    # Cached integrations also get a cache fill listener on an abstract Unix socket.
    fills = {name: m.address.pipe.path for name, m in listeners.items() if name not in ports}
    assert fills == {
        "auth0_cache_fill": "@integration-service/cache-fill/127.0.0.2:10002",
        "weather-api_cache_fill": "@integration-service/cache-fill/127.0.0.2:10007",
    }
    assert ports == {
        "stripe": ("127.0.0.2", 10001),
        "auth0": ("127.0.0.2", 10002),
        "postgresql": ("127.0.0.2", 10003),
        "redis": ("127.0.0.2", 10004),
        "email": ("127.0.0.2", 10005),
        "storage": ("127.0.0.2", 10006),
        "weather-api": ("127.0.0.2", 10007),
    }


def test_tcp_kinds_get_tcp_proxy_to_their_cluster() -> None:
    result = _example()
    for name in ("postgresql", "redis", "email"):
        chain = result.resources[LISTENER][name].filter_chains[0].filters[0]
        assert chain.name == "envoy.filters.network.tcp_proxy"
        proxy = _unpack(chain.typed_config)
        assert proxy["cluster"] == name and proxy["stat_prefix"] == name
        assert name not in result.resources[ROUTE]


def test_http_filter_order() -> None:
    listeners = _example().resources[LISTENER]
    assert _filters(listeners["auth0"]) == [
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.cache_v2",
        "envoy.filters.http.router",
    ]
    assert _filters(listeners["storage"]) == ["envoy.filters.http.router"]
    clusters = _example().resources[CLUSTER]
    assert _upstream_filters(clusters["stripe"]) == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.credential_injector",
        "envoy.filters.http.upstream_codec",
    ]
    router = _hcm(listeners["stripe"])["http_filters"][-1]["typed_config"]
    assert router == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        "suppress_envoy_headers": True,
    }
    hcm = _hcm(listeners["stripe"])
    assert hcm["stat_prefix"] == "stripe"
    assert hcm["rds"]["route_config_name"] == "stripe"
    assert hcm["http_filters"][0]["typed_config"]["stat_prefix"] == "stripe"


def test_retry_only_on_idempotent_routes() -> None:
    route_config = _example().resources[ROUTE]["stripe"]
    routes = route_config.virtual_hosts[0].routes
    assert [r.name for r in routes] == ["idempotent-method", "idempotency-key", "default"]
    assert routes[0].route.HasField("retry_policy")
    assert routes[1].route.HasField("retry_policy")
    assert not routes[2].route.HasField("retry_policy")
    assert routes[0].match.headers[0].name == ":method"
    assert "POST" not in routes[0].match.headers[0].string_match.safe_regex.regex
    assert routes[1].match.headers[0].present_match
    assert {r.route.host_rewrite_literal for r in routes} == {"api.stripe.com"}
    backoff = routes[0].route.retry_policy.rate_limited_retry_back_off
    assert backoff.reset_headers[0].name == "retry-after"
    assert backoff.max_interval.seconds == 10


def test_per_tenant_rate_limit_descriptors() -> None:
    listener = translate(HTTP_PER_TENANT(), {}, TranslateOptions()).resources[LISTENER]["crm"]
    limit = _hcm(listener)["http_filters"][0]["typed_config"]
    assert [d["entries"][0]["value"] for d in limit["descriptors"]] == ["acme", "globex"]
    action = limit["rate_limits"][0]["actions"][0]["request_headers"]
    assert action == {"header_name": "x-org-id", "descriptor_key": "tenant"}


def test_access_log_and_cache_paths() -> None:
    options = TranslateOptions(
        access_log_dir="/logs", cache_root="/cache", cache_generations={"weather-api": 4}
    )
    listener = translate(example_integrations(), EXAMPLE_SECRETS, options).resources[LISTENER][
        "weather-api"
    ]
    hcm = _hcm(listener)
    log = hcm["access_log"][0]["typed_config"]
    assert log["path"] == "/logs/weather-api.log"
    fields = log["log_format"]["json_format"]
    assert fields["response_code_details"] == "%RESPONSE_CODE_DETAILS%"
    assert {"response_code", "method", "path", "duration", "upstream_host", "request_id"} <= set(
        fields
    )
    cache = hcm["http_filters"][1]["typed_config"]
    assert cache["typed_config"]["cache_path"] == "/cache/weather-api/4"
    # Misses go through the fill listener, which uses the same route table (Host rewrite).
    assert cache["override_upstream_cluster"] == "weather-api_cache_fill"
    resources = translate(example_integrations(), EXAMPLE_SECRETS, options).resources
    fill = _hcm(resources[LISTENER]["weather-api_cache_fill"])
    assert fill["rds"]["route_config_name"] == "weather-api"
    assert [f["name"] for f in fill["http_filters"]] == ["envoy.filters.http.router"]
    assert "access_log" not in fill
    endpoint = resources[CLUSTER]["weather-api_cache_fill"].load_assignment.endpoints[0]
    assert endpoint.lb_endpoints[0].endpoint.address.pipe.path == (
        "@integration-service/cache-fill/127.0.0.1:10007"
    )


# -- clusters ---------------------------------------------------------------------------------


def test_cluster_failure_handling() -> None:
    clusters = _example().resources[CLUSTER]
    # Cache fill clusters reach Envoy's own fill listener, whose router uses the real cluster.
    for cluster in (c for n, c in clusters.items() if not n.endswith("_cache_fill")):
        assert cluster.common_lb_config.healthy_panic_threshold.value == 0
        assert cluster.outlier_detection.max_ejection_percent.value == 100
        assert cluster.circuit_breakers.thresholds[0].track_remaining
    assert clusters["stripe"].circuit_breakers.thresholds[0].max_requests.value == 200


def test_generation_in_cluster_metadata() -> None:
    options = TranslateOptions(generations={"stripe": 7})
    clusters = translate(example_integrations(), EXAMPLE_SECRETS, options).resources[CLUSTER]
    meta = clusters["stripe"].metadata.filter_metadata["integration_service"]
    assert meta["generation"] == 7
    assert clusters["auth0"].metadata.filter_metadata["integration_service"]["generation"] == 0


def test_cluster_discovery_types() -> None:
    clusters = _example().resources[CLUSTER]
    assert clusters["stripe"].type == clusters["stripe"].LOGICAL_DNS
    assert clusters["postgresql"].type == clusters["postgresql"].STRICT_DNS
    assert clusters["stripe"].dns_lookup_family == clusters["stripe"].V4_PREFERRED
    tls = translate(TLS_MTLS(), {}, TranslateOptions()).resources[CLUSTER]
    assert tls["vault-ip"].type == tls["vault-ip"].STATIC
    context = _unpack(tls["vault-ip"].transport_socket.typed_config)
    assert "sni" not in context
    san = context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"san_type": "IP_ADDRESS", "matcher": {"exact": "10.20.30.40"}}]
    legacy = _unpack(tls["legacy"].transport_socket.typed_config)
    assert legacy["sni"] == "redis.example.com"
    assert "validation_context" not in legacy.get("common_tls_context", {})


def test_consul_integration_uses_eds() -> None:
    endpoints = {"billing": [("10.1.0.1", 8080)]}
    resources = translate(CONSUL_EDS(), {}, TranslateOptions(endpoints=endpoints)).resources
    cluster = resources[CLUSTER]["billing"]
    assert cluster.type == cluster.EDS
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assignment = resources[ENDPOINT]["billing"]
    address = assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("10.1.0.1", 8080)
    empty = translate(CONSUL_EDS(), {}, TranslateOptions())
    assert "billing" in empty.resources[ENDPOINT]
    assert any("billing" in w for w in empty.warnings)


def test_storage_signing_uses_credentials_file_only() -> None:
    cluster = translate(STORAGE_FILE(), {}, TranslateOptions()).resources[CLUSTER]["uploads"]
    signing = _cluster_filters(cluster)[1]["typed_config"]
    provider = signing["credential_provider"]
    assert provider["custom_credential_provider_chain"] is True
    assert provider["credentials_file_provider"]["credentials_data_source"] == {
        "filename": "/etc/integration-service/uploads.credentials"
    }
    assert signing["region"] == "eu-central-1"
    assert signing["host_rewrite"] == "minio.example.com:9000"
    result = _example()
    assert "envoy.filters.http.aws_request_signing" not in _upstream_filters(
        result.resources[CLUSTER]["storage"]
    )
    assert any(w.startswith("storage:") and "env:STORAGE" in w for w in result.warnings)


def test_auth0_injects_the_brokered_token_from_its_own_secret() -> None:
    """Token mode: a generic injector reading ``token/<id>``, allowed to let a request go
    without a token (empty secret: no valid token), and the app's own Authorization
    removed before it; the client secret never reaches Envoy."""
    result = _example()
    clusters = result.resources[CLUSTER]
    assert "auth0_oauth2_token" not in clusters
    filters = _cluster_filters(clusters["auth0"])
    removed = [m["remove"] for m in filters[0]["typed_config"]["mutations"]["request_mutations"]]
    assert "authorization" in removed
    injector = filters[1]["typed_config"]
    assert injector["allow_request_without_credential"] is True
    assert injector["overwrite"] is True
    generic = injector["credential"]["typed_config"]
    assert generic["credential"]["name"] == "token/auth0"
    assert generic["header"] == "Authorization"
    assert result.resources[SECRET]["token/auth0"].generic_secret.secret.inline_bytes == b""
    assert not any("auth0" in name and "secret" in name for name in result.resources[SECRET])


def test_a_token_fills_only_its_own_integrations_secret() -> None:
    options = TranslateOptions(tokens={"auth0": "tok-a", "other": "tok-b"})
    secrets = translate(example_integrations(), EXAMPLE_SECRETS, options).resources[SECRET]
    assert secrets["token/auth0"].generic_secret.secret.inline_bytes == b"Bearer tok-a"
    assert not any(b"tok-b" in s.SerializeToString() for s in secrets.values())


# -- inputs -----------------------------------------------------------------------------------


def test_disabled_integrations_produce_nothing() -> None:
    resources = translate(DISABLED(), {"env:RETIRED_KEY": "x"}, TranslateOptions()).resources
    for type_url in (CLUSTER, LISTENER, ROUTE, SECRET):
        assert "retired" not in {name.split("/")[0] for name in resources[type_url]}


def test_missing_listen_port_names_the_integration() -> None:
    items = [i.replace(listen_port=None) for i in TCP_REDIS()]
    with pytest.raises(ValueError, match="'cache'"):
        translate(items, {}, TranslateOptions())


def test_duplicate_listen_port_is_rejected() -> None:
    items = example_integrations()
    items = [i.replace(listen_port=10001) if i.id == "auth0" else i for i in items]
    with pytest.raises(ValueError, match="10001"):
        translate(items, EXAMPLE_SECRETS, TranslateOptions())


def test_deterministic_output() -> None:
    first = _example().resources
    items = example_integrations()
    items.reverse()
    secrets = dict(reversed(list(EXAMPLE_SECRETS.items())))
    second = translate(items, secrets, TranslateOptions())
    assert list(first) == list(second.resources)
    for type_url, by_name in first.items():
        assert list(by_name) == list(second.resources[type_url])
        for name, message in by_name.items():
            other = second.resources[type_url][name]
            assert message.SerializeToString(deterministic=True) == other.SerializeToString(
                deterministic=True
            )


def test_file_secret_trailing_newline_is_stripped() -> None:
    items = [
        i.replace(credentials={"api_key": CredentialRef("file:/run/crm")})
        for i in HTTP_PER_TENANT()
    ]
    result = translate(items, {"file:/run/crm": b"tok\n"}, TranslateOptions())
    assert result.resources[SECRET]["crm/api_key"].generic_secret.secret.inline_bytes == (
        b"Token tok"
    )


# -- static bootstrap -------------------------------------------------------------------------


def test_static_bootstrap_inlines_ads_references() -> None:
    endpoints = {"billing": [("10.1.0.1", 8080)]}
    resources = translate(
        [*CONSUL_EDS(), *HTTP_PER_TENANT()],
        {"env:CRM_TOKEN": "t"},
        TranslateOptions(endpoints=endpoints),
    ).resources
    config = render_static_bootstrap(resources, 9901)
    static = config["static_resources"]
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }
    billing = next(c for c in static["clusters"] if c["name"] == "billing")
    assert billing["type"] == "STATIC" and "eds_cluster_config" not in billing
    assert "sds_config" not in str(config) and "'rds'" not in str(config)
    assert [s["name"] for s in static["secrets"]] == ["crm/api_key"]
    hcm = static["listeners"][1]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["route_config"]["name"] == "crm"
    # The input is left untouched.
    assert references(resources).routes == {"billing", "crm"}


# -- purity -----------------------------------------------------------------------------------


def test_translator_does_no_io() -> None:
    forbidden = {"asyncio", "grpc", "aiohttp", "os", "pathlib", "socket", "subprocess"}
    package = REPO / "control_plane" / "xds" / "translate"
    for path in sorted(Path(package).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{path.name} opens a file"
