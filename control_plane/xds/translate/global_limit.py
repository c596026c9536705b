"""``scope: global`` rate limits: Envoy's ``ratelimit`` filter asking envoyproxy/ratelimit.

The quota is held in one place for every Envoy (envoyproxy/ratelimit counting in Redis, the
engine Envoy Gateway uses), so it is exact across pods and replicas. This module holds both
halves of the translation, so they cannot drift apart:

* the Envoy side (pure xds-protos): the listener's ``envoy.filters.http.ratelimit`` filter
  with the descriptors it sends, and the gRPC cluster ``integration_ratelimit`` that reaches
  the service at the operator's ``ratelimit_address``;
* the service side: :func:`service_config`, the envoyproxy/ratelimit YAML document (domain
  ``integration-service``) the control plane renders into the service's runtime directory
  (``control_plane.xds.ratelimit_config``).

Descriptors (the whole wire contract). Every request sends ``(integration=<id>)``; a request
whose tenant header names a tenant listed in ``per_tenant`` also sends
``(integration=<id>, tenant=<tenant>)``. envoyproxy/ratelimit checks each descriptor against
its own counter and answers OVER_LIMIT when any is over, so a listed tenant is held to its
own quota *and* to the integration's (the upstream's account-wide quota, exactly as the pod
scope); requests without the header or with an unlisted tenant count against the
integration's bucket alone. The tenant entry comes from a ``header_value_match`` action per
listed tenant, not from ``request_headers``: the descriptor value is then the tenant name
from the registry, never text the client sent, and an unlisted tenant costs no Redis key.
https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-ratelimit-action-headervaluematch

A global integration has no local token bucket: the quota is counted once, by the service.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, grpc_service_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.ratelimit.v3 import rls_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import wrappers_pb2  # type: ignore[import-untyped]

from control_plane.model import Integration, RateBucket
from control_plane.xds.translate.messages import duration, is_ip, pack

__all__ = [
    "DOMAIN",
    "INTEGRATION_KEY",
    "RATELIMIT_CLUSTER",
    "RATELIMIT_TIMEOUT_S",
    "TENANT_KEY",
    "is_global",
    "parse_address",
    "ratelimit_cluster",
    "ratelimit_filter",
    "service_config",
]

DOMAIN = "integration-service"
INTEGRATION_KEY = "integration"
TENANT_KEY = "tenant"
# "_" never occurs in an integration id, so the cluster cannot collide with one.
RATELIMIT_CLUSTER = "integration_ratelimit"
# How long Envoy waits for the service's answer before the failure mode applies (Envoy's
# default is 20 ms; a Redis round trip behind a loaded Go service can take longer).
RATELIMIT_TIMEOUT_S = 0.1
_UNITS = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}


def is_global(item: Integration) -> bool:
    rl = item.policies.rate_limit
    return rl is not None and rl.scope == "global"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ratelimit_address {address!r} is not host:port")
    return host, int(port)


def _generic_key(item: Integration) -> Any:
    return rc.RateLimit.Action(
        generic_key=rc.RateLimit.Action.GenericKey(
            descriptor_key=INTEGRATION_KEY, descriptor_value=item.id
        )
    )


def _descriptors(item: Integration) -> list[Any]:
    rl = item.policies.rate_limit
    assert rl is not None
    entries = [rc.RateLimit(actions=[_generic_key(item)])]
    for tenant in sorted(rl.per_tenant):
        match = rc.RateLimit.Action.HeaderValueMatch(
            descriptor_key=TENANT_KEY,
            descriptor_value=tenant,
            expect_match=wrappers_pb2.BoolValue(value=True),
            headers=[
                rc.HeaderMatcher(
                    name=rl.tenant_header, string_match=string_pb2.StringMatcher(exact=tenant)
                )
            ],
        )
        # Both actions or none: without a match the whole descriptor is left out.
        entries.append(
            rc.RateLimit(
                actions=[_generic_key(item), rc.RateLimit.Action(header_value_match=match)]
            )
        )
    return entries


def ratelimit_filter(item: Integration) -> Any:
    """The listener's ``envoy.filters.http.ratelimit`` (one per listener, so the failure
    mode and the response headers are per integration). Stats:
    ``cluster.<id>.ratelimit.{ok,over_limit,error,failure_mode_allowed}``."""
    rl = item.policies.rate_limit
    assert rl is not None and rl.scope == "global"
    config = rate_limit_pb2.RateLimit(
        domain=DOMAIN,
        timeout=duration(RATELIMIT_TIMEOUT_S),
        # closed: no answer (service or Redis down, timeout) is a refusal, 503 below;
        # open: the request goes on and failure_mode_allowed counts it.
        failure_mode_deny=rl.failure_mode == "closed",
        rate_limit_service=rls_pb2.RateLimitServiceConfig(
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=RATELIMIT_CLUSTER)
            ),
            transport_api_version=config_source_pb2.ApiVersion.V3,
        ),
        # In the filter, not on the route: the route table stays scope-neutral.
        rate_limits=_descriptors(item),
    )
    if rl.failure_mode == "closed":
        # Envoy's default is 500; 503 says "try again later", which is what it is.
        config.status_on_error.CopyFrom(
            http_status_pb2.HttpStatus(code=http_status_pb2.StatusCode.ServiceUnavailable)
        )
    if rl.response_headers:
        # x-ratelimit-limit / -remaining / -reset to the app (IETF draft 03).
        config.enable_x_ratelimit_headers = rate_limit_pb2.RateLimit.DRAFT_VERSION_03
    return hcm_pb2.HttpFilter(name="envoy.filters.http.ratelimit", typed_config=pack(config))


def ratelimit_cluster(address: str) -> Any:
    """The gRPC (HTTP/2, plaintext) cluster of envoyproxy/ratelimit at ``address``."""
    host, port = parse_address(address)
    h2 = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    socket = address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )
    return cluster_pb2.Cluster(
        name=RATELIMIT_CLUSTER,
        type=cluster_pb2.Cluster.STATIC if is_ip(host) else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=duration(1.0),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=RATELIMIT_CLUSTER,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(address=socket)
                        )
                    ]
                )
            ],
        ),
        typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": pack(h2)
        },
    )


def _limit(bucket: RateBucket) -> dict[str, Any]:
    # Validation (rate_rules.global_unit_problems) admits only these windows.
    return {"unit": _UNITS[bucket.per], "requests_per_unit": bucket.requests}


def service_config(items: Iterable[Integration]) -> str:
    """envoyproxy/ratelimit's YAML config for the enabled global ``items`` (sorted, so the
    same registry renders the same bytes on every replica). ``burst`` has no meaning for
    the service's fixed windows and is not rendered."""
    descriptors = []
    for item in sorted(items, key=lambda i: i.id):
        rl = item.policies.rate_limit
        if not item.enabled or rl is None or rl.scope != "global":
            continue
        entry: dict[str, Any] = {
            "key": INTEGRATION_KEY,
            "value": item.id,
            "rate_limit": _limit(rl.bucket),
        }
        if rl.per_tenant:
            entry["descriptors"] = [
                {"key": TENANT_KEY, "value": tenant, "rate_limit": _limit(bucket)}
                for tenant, bucket in sorted(rl.per_tenant.items())
            ]
        descriptors.append(entry)
    document = {"domain": DOMAIN, "descriptors": descriptors}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
