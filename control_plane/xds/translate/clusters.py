"""One ``Cluster`` per enabled integration, named by its id.

Discovery: an IP literal is ``STATIC``; a hostname of an HTTP (SaaS) upstream is
``LOGICAL_DNS`` -- Envoy's recommendation for large web services behind DNS: it connects to
the first address of the latest answer and keeps connections across DNS rotation; a
hostname of a TCP upstream (database, Redis, SMTP) is ``STRICT_DNS`` (every address is a
host); ``discovery: consul`` is ``EDS`` over ADS. Those DNS types are for names under
``resolution: envoy`` only: a vetted name (the default for API registrations) is ``EDS``
too, fed the addresses the control plane resolved and checked. TLS is the same either way:
SNI and the certificate's SAN check use the configured name, never an address.
"""

from __future__ import annotations

import functools
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2

from control_plane.model import Integration
from control_plane.xds.translate.endpoints import load_assignment, vetted_name
from control_plane.xds.translate.http_filters import (
    cache_fill_address,
    cache_fill_name,
    upstream_filters,
)
from control_plane.xds.translate.messages import ads, duration, is_ip, pack, struct
from control_plane.xds.translate.options import TranslateOptions
from control_plane.xds.translate.secrets import SecretBook

__all__ = ["METADATA_NAMESPACE", "cache_fill_cluster", "cluster"]

METADATA_NAMESPACE = "integration_service"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@functools.cache
def _http1() -> Any:
    # Plain HTTP/1.1 upstream: what every SaaS edge and the probes' fakes speak. Shared
    # (built once): the protocol options copy it.
    return http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
        http_protocol_options=protocol_pb2.Http1ProtocolOptions()
    )


def _circuit_breakers(item: Integration, breakers: Any) -> None:
    cb = item.policies.circuit_breaker
    thresholds = breakers.thresholds.add(
        priority=base_pb2.RoutingPriority.DEFAULT,
        # Publishes circuit_breakers.default.remaining_* gauges for the dashboards.
        track_remaining=True,
    )
    thresholds.max_connections.value = cb.max_connections
    thresholds.max_pending_requests.value = cb.max_pending_requests
    thresholds.max_requests.value = cb.max_requests
    thresholds.max_retries.value = cb.max_retries


def _outlier_detection(item: Integration, detection: Any) -> None:
    od = item.policies.outlier_detection
    detection.consecutive_5xx.value = od.consecutive_5xx
    detection.consecutive_gateway_failure.value = od.consecutive_gateway_failure
    # Gateway failures (502/503/504) are only *counted* unless enforced; enforce them
    # like any 5xx so a dead SaaS edge is ejected as fast as an erroring one.
    detection.enforcing_consecutive_gateway_failure.value = 100
    detection.interval.CopyFrom(duration(od.interval))
    detection.base_ejection_time.CopyFrom(duration(od.base_ejection_time))
    detection.max_ejection_time.CopyFrom(duration(od.max_ejection_time))
    # Envoy's 10 % default never ejects the only host of a single-endpoint cluster.
    detection.max_ejection_percent.value = od.max_ejection_percent


def _san_matchers(item: Integration) -> list[Any]:
    """Hostname verification: the certificate must name what we connect to."""
    up = item.upstream
    name = up.tls.sni or up.host
    san_type = (
        common_pb2.SubjectAltNameMatcher.IP_ADDRESS
        if is_ip(name)
        else common_pb2.SubjectAltNameMatcher.DNS
    )
    # DNS SAN matching applies RFC 6125 wildcard rules to the certificate's names.
    return [
        common_pb2.SubjectAltNameMatcher(
            san_type=san_type, matcher=string_pb2.StringMatcher(exact=name)
        )
    ]


def _tls_context(item: Integration, options: TranslateOptions, book: SecretBook) -> Any:
    up = item.upstream
    common = tls_pb2.CommonTlsContext()
    if up.tls.verify:
        ca = book.ca_bundle(item)
        if ca is not None:
            # The private CA arrives over SDS; the SAN check stays local to the cluster.
            common.combined_validation_context.CopyFrom(
                tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                    default_validation_context=common_pb2.CertificateValidationContext(
                        match_typed_subject_alt_names=_san_matchers(item)
                    ),
                    validation_context_sds_secret_config=ca,
                )
            )
        else:
            common.validation_context.CopyFrom(
                common_pb2.CertificateValidationContext(
                    trusted_ca=base_pb2.DataSource(filename=options.system_ca_file),
                    match_typed_subject_alt_names=_san_matchers(item),
                )
            )
    # tls.verify false: no validation context at all, which is how Envoy skips verification.
    client_cert = book.client_certificate(item)
    if client_cert is not None:
        common.tls_certificate_sds_secret_configs.append(client_cert)
    context = tls_pb2.UpstreamTlsContext(common_tls_context=common)
    sni = up.tls.sni or (None if is_ip(up.host) else up.host)
    if sni:  # RFC 6066: SNI carries host names only, never IP literals.
        context.sni = sni
    return context


def _discovery(item: Integration, protocol: str) -> tuple[int, bool]:
    """(cluster type, needs DNS settings) for the integration's upstream."""
    up = item.upstream
    if up.discovery == "consul" or vetted_name(item) is not None:
        return cluster_pb2.Cluster.EDS, False
    if is_ip(up.host):
        return cluster_pb2.Cluster.STATIC, False
    if protocol == "http":
        return cluster_pb2.Cluster.LOGICAL_DNS, True
    return cluster_pb2.Cluster.STRICT_DNS, True


def cluster(item: Integration, protocol: str, options: TranslateOptions, book: SecretBook) -> Any:
    """The cluster of ``item``; ``protocol`` is the adapter's listener protocol."""
    up = item.upstream
    kind, dns = _discovery(item, protocol)
    # Filled in place: a message given to a constructor is copied, once per level.
    result = cluster_pb2.Cluster(
        name=item.id, type=kind, connect_timeout=duration(item.policies.connect_timeout)
    )
    _circuit_breakers(item, result.circuit_breakers)
    # 0 %: with the default 50 % panic threshold an ejected single host is still used
    # ("panic mode"); at 0 % requests fail fast with 503 while it is ejected.
    result.common_lb_config.healthy_panic_threshold.value = 0.0
    result.metadata.filter_metadata[METADATA_NAMESPACE].CopyFrom(
        struct(
            {
                "generation": options.generations.get(item.id, 0),
                "kind": item.kind,
                "tenant": item.tenant,
            }
        )
    )
    if dns:
        result.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    if kind == cluster_pb2.Cluster.EDS:
        result.eds_cluster_config.eds_config.CopyFrom(ads())
        result.eds_cluster_config.service_name = item.id
    else:
        result.load_assignment.CopyFrom(load_assignment(item.id, [(up.host, up.port)]))
    if item.policies.outlier_detection.enabled:
        _outlier_detection(item, result.outlier_detection)
    if protocol == "http":
        options_pb = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=_http1(),
            # Credential injection / SigV4 (see http_filters): every stream, cached or not.
            http_filters=upstream_filters(item, book),
        )
        result.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(pack(options_pb))
    if up.tls.enabled:
        tls = _tls_context(item, options, book)
        if protocol == "http":
            tls.common_tls_context.alpn_protocols.append("http/1.1")
        result.transport_socket.name = "envoy.transport_sockets.tls"
        result.transport_socket.typed_config.CopyFrom(pack(tls))
    return result


def cache_fill_cluster(item: Integration, options: TranslateOptions) -> Any:
    """``STATIC`` cluster of one endpoint: the fill listener's abstract Unix socket. Circuit
    breakers, outlier detection, TLS and credentials stay on the integration's cluster, which
    the fill listener's router uses exactly like the main listener's."""
    name = cache_fill_name(item)
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration(item.policies.connect_timeout),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=address_pb2.Address(
                                    pipe=address_pb2.Pipe(path=cache_fill_address(item, options))
                                )
                            )
                        )
                    ]
                )
            ],
        ),
    )
