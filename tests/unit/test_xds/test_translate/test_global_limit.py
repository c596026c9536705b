"""``scope: global``: the Envoy filter, the service cluster, the service's config document,
the refusal without a rate-limit service, and the tenant names a global quota accepts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from control_plane.model import Integration
from control_plane.problems import RegistryError
from control_plane.registry.loader import parse_integrations_text
from control_plane.registry.view import RegistryView
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import ConfigPipeline
from control_plane.xds.ratelimit_config import CONFIG_NAME, RateLimitConfigWriter
from control_plane.xds.translate import CLUSTER, LISTENER, TranslateOptions, translate
from control_plane.xds.translate.global_limit import (
    RATELIMIT_CLUSTER,
    parse_address,
    service_config,
)
from control_plane.xds.translate.http_filters import http_filters


def _items(rate_limit: str, extra: str = "") -> list[Integration]:
    text = f"""
    integrations:
      - id: partner
        kind: http
        upstream: https://api.partner.example.com
        listen_port: 12001
        policies:
          rate_limit: {rate_limit}
    {extra}"""
    return parse_integrations_text(textwrap.dedent(text), "<test>")


GLOBAL = "{requests: 60, per: 1m, scope: global, per_tenant: {acme: {requests: 2, per: 1s}}}"
OPTIONS = TranslateOptions(ratelimit_address="10.0.0.7:8081")


def test_global_replaces_the_local_bucket_and_serves_the_service_cluster() -> None:
    (item,) = _items(GLOBAL)
    names = [f.name for f in http_filters(item, OPTIONS)]
    assert names == ["envoy.filters.http.ratelimit", "envoy.filters.http.router"]
    resources = translate([item], {}, OPTIONS).resources
    cluster = resources[CLUSTER][RATELIMIT_CLUSTER]
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "10.0.0.7",
        8081,
    )
    assert "partner" in resources[LISTENER]


def test_pod_scope_has_no_service_cluster_and_keeps_its_bucket() -> None:
    (item,) = _items("{requests: 5, per: 1s}")
    assert http_filters(item, TranslateOptions())[0].name == "envoy.filters.http.local_ratelimit"
    assert RATELIMIT_CLUSTER not in translate([item], {}, OPTIONS).resources[CLUSTER]


def test_global_without_a_service_is_refused_never_served_as_pod(tmp_path: Path) -> None:
    items = _items(GLOBAL)
    with pytest.raises(ValueError, match="no rate-limit service is configured"):
        translate(items, {}, TranslateOptions())
    pipeline = ConfigPipeline(SnapshotCache(), data_dir=tmp_path, environ={})
    with pytest.raises(RegistryError, match="ratelimit_address"):
        pipeline.precheck(items)
    pipeline.ratelimit_address = "127.0.0.1:8081"
    pipeline.precheck(items)


def test_service_config_document() -> None:
    items = _items(GLOBAL)
    doc = yaml.safe_load(service_config(items))
    assert doc == {
        "domain": "integration-service",
        "descriptors": [
            {
                "key": "integration",
                "value": "partner",
                "rate_limit": {"unit": "minute", "requests_per_unit": 60},
                "descriptors": [
                    {
                        "key": "tenant",
                        "value": "acme",
                        "rate_limit": {"unit": "second", "requests_per_unit": 2},
                    }
                ],
            }
        ],
    }
    pod = _items("{requests: 5, per: 1s}")
    assert yaml.safe_load(service_config(pod))["descriptors"] == []


def test_writer_renders_atomically_and_only_on_change(tmp_path: Path) -> None:
    writer = RateLimitConfigWriter(tmp_path / "config")
    view = RegistryView({i.id: i for i in _items(GLOBAL)})
    assert writer.render(view) is True
    assert writer.render(view) is False  # same bytes: the service is not made to reload
    assert sorted(p.name for p in (tmp_path / "config").iterdir()) == [CONFIG_NAME]


@pytest.mark.parametrize("tenant", ["a" * 65, "x y", "../etc", "-lead"])
def test_global_tenant_names_are_bounded(tenant: str) -> None:
    rule = f'{{requests: 5, per: 1s, scope: global, per_tenant: {{"{tenant}": {{requests: 1}}}}}}'
    with pytest.raises(RegistryError, match="cannot name a global quota"):
        _items(rule)


@pytest.mark.parametrize("address", ["nohost", ":80", "h:0", "h:http", "[::1]"])
def test_bad_service_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        parse_address(address)
    assert parse_address("[::1]:8081") == ("::1", 8081)
