"""Registry cases for the translator's golden, unit and e2e tests.

Each case is a list of integrations (parsed and validated like a real integrations file),
the resolved secret values keyed by reference, and translate options.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from control_plane.model import Integration
from control_plane.registry.loader import (
    load_integrations_file,
    load_rate_limits,
    parse_integrations_text,
)
from control_plane.xds.translate import TranslateOptions

__all__ = ["CASES", "Case", "example_integrations"]

REPO = Path(__file__).resolve().parents[4]

# Fixed fake values: goldens must not depend on the environment.
EXAMPLE_SECRETS: Mapping[str, str] = {
    "env:STRIPE_SECRET_KEY": "sk_test_golden",
    "env:STRIPE_PUBLISHABLE_KEY": "pk_test_golden",
    "env:AUTH0_CLIENT_ID": "auth0-client-id-golden",
    "env:AUTH0_CLIENT_SECRET": "auth0-client-secret-golden",
    "env:STORAGE_SERVICE_ACCESS_KEY": "AKIAGOLDEN",
    "env:STORAGE_SERVICE_SECRET_KEY": "storage-secret-golden",
    "env:WEATHER_API_KEY": "weather-key-golden",
}

GOLDEN_OPTIONS = TranslateOptions(
    cache_root="/var/cache/integration-service",
    access_log_dir="/var/log/integration-service",
    generations={"stripe": 3},
    cache_generations={"weather-api": 2},
)


@dataclass(frozen=True)
class Case:
    name: str
    integrations: Callable[[], list[Integration]]
    secrets: Mapping[str, bytes | str]
    options: TranslateOptions = GOLDEN_OPTIONS


def example_integrations() -> list[Integration]:
    """config/integrations.yaml; weather-api gets a port (ports are assigned by the store)."""
    rules = load_rate_limits(REPO / "config" / "rate_limits.yaml")
    items = load_integrations_file(REPO / "config" / "integrations.yaml", rules)
    return [i if i.listen_port else i.replace(listen_port=10007) for i in items]


def _parse(text: str) -> Callable[[], list[Integration]]:
    return lambda: parse_integrations_text(textwrap.dedent(text), "<case>")


HTTP_PER_TENANT = _parse(
    """
    integrations:
      - id: crm
        kind: http
        upstream: https://api.crm.example.com
        listen_port: 11001
        credentials: {api_key: env:CRM_TOKEN}
        policies:
          timeout: 5s
          retries: {max_retries: 3, per_try_timeout: 2s, retriable_status_codes: [429, 503]}
          rate_limit:
            requests: 100
            per: 1s
            burst: 200
            tenant_header: x-org-id
            per_tenant:
              acme: {requests: 5, per: 1s, burst: 10}
              globex: {requests: 20, per: 1s, burst: 20}
        settings: {api_key_header: X-Api-Token, api_key_prefix: "Token "}
    """
)

TCP_REDIS = _parse(
    """
    integrations:
      - id: cache
        kind: redis
        upstream: tcp://redis.internal.example.com:6379
        listen_port: 11002
        policies:
          connect_timeout: 250ms
          outlier_detection: {enabled: false}
    """
)

TLS_MTLS = _parse(
    """
    integrations:
      - id: ledger
        kind: http
        upstream:
          url: https://ledger.internal.example.com:8443
          tls:
            ca_bundle: file:/etc/integration-service/ledger-ca.pem
            client_cert: file:/etc/integration-service/ledger-client.pem
            client_key: file:/etc/integration-service/ledger-client.key
        listen_port: 11003
      - id: vault-ip
        kind: http
        upstream: https://10.20.30.40:8200
        listen_port: 11004
      - id: legacy
        kind: redis
        upstream:
          url: tls://legacy-redis.example.com:6380
          tls: {verify: false, sni: redis.example.com}
        listen_port: 11005
    """
)

DISABLED = _parse(
    """
    integrations:
      - id: active
        kind: http
        upstream: https://active.example.com
        listen_port: 11006
      - id: retired
        kind: stripe
        enabled: false
        upstream: https://api.stripe.com
        credentials: {api_key: env:RETIRED_KEY}
    """
)

CONSUL_EDS = _parse(
    """
    integrations:
      - id: billing
        kind: http
        upstream: {host: billing.service.consul, port: 8080, scheme: http,
                   discovery: consul, consul_service: billing}
        listen_port: 11007
    """
)

STORAGE_FILE = _parse(
    """
    integrations:
      - id: uploads
        kind: storage
        upstream: https://minio.example.com:9000
        listen_port: 11008
        credentials:
          access_key_id: file:/etc/integration-service/uploads.credentials
          secret_access_key: file:/etc/integration-service/uploads.credentials
        settings: {region: eu-central-1, bucket: uploads}
    """
)

# scope global (docs/rate-limits.md#global): one fail-open integration with tenants and
# x-ratelimit headers, one fail-closed; the rate-limit service cluster is served once.
GLOBAL_SCOPE = _parse(
    """
    integrations:
      - id: partner-api
        kind: http
        upstream: https://api.partner.example.com
        listen_port: 11009
        policies:
          rate_limit:
            requests: 60
            per: 1m
            scope: global
            response_headers: true
            tenant_header: x-org-id
            per_tenant:
              acme: {requests: 10, per: 1m}
              globex: {requests: 2, per: 1s}
      - id: payments-gw
        kind: http
        upstream: https://payments.example.com
        listen_port: 11010
        policies:
          rate_limit: {requests: 1000, per: 1h, scope: global, failure_mode: closed}
    """
)

FAKE_PEM = "-----BEGIN FAKE-----\ngolden\n-----END FAKE-----\n"

CASES: tuple[Case, ...] = (
    Case("example", example_integrations, EXAMPLE_SECRETS),
    Case("http_per_tenant", HTTP_PER_TENANT, {"env:CRM_TOKEN": "crm-token-golden"}),
    Case("tcp_redis", TCP_REDIS, {}),
    Case(
        "tls_ca_mtls",
        TLS_MTLS,
        {
            "file:/etc/integration-service/ledger-ca.pem": FAKE_PEM,
            "file:/etc/integration-service/ledger-client.pem": FAKE_PEM,
            "file:/etc/integration-service/ledger-client.key": FAKE_PEM,
        },
    ),
    Case("disabled", DISABLED, {"env:RETIRED_KEY": "sk_retired_golden"}),
    Case(
        "consul_eds",
        CONSUL_EDS,
        {},
        TranslateOptions(endpoints={"billing": [("10.1.0.1", 8080), ("10.1.0.2", 8080)]}),
    ),
    Case(
        "global_scope",
        GLOBAL_SCOPE,
        {},
        TranslateOptions(ratelimit_address="ratelimit.integration-service.svc:8081"),
    ),
    Case(
        "storage_file",
        STORAGE_FILE,
        {"file:/etc/integration-service/uploads.credentials": "[default]\n"},
    ),
)
