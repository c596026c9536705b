"""One ``Listener`` per enabled integration on ``listen_address:listen_port``, named by id.

HTTP kinds get an HTTP connection manager whose route table (named by the id) comes over
ADS; TCP kinds (PostgreSQL, Redis, SMTP) get a ``tcp_proxy`` to the integration's cluster.
An HTTP integration with a response cache also gets its cache *fill* listener
``<id>_cache_fill`` (see ``http_filters``): same route table, router only, no access log
(the main listener's log already has one line per request, hit or miss).
"""

from __future__ import annotations

import functools
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from adapters import ADAPTERS
from control_plane.model import Integration
from control_plane.xds.translate.http_filters import (
    cache_fill_address,
    cache_fill_http_filters,
    cache_fill_name,
    http_filters,
)
from control_plane.xds.translate.messages import ads, duration, pack, struct
from control_plane.xds.translate.options import TranslateOptions

__all__ = [
    "ACCESS_LOG_FIELDS",
    "TCP_IDLE_TIMEOUT",
    "cache_fill_listener",
    "listener",
    "tcp_idle_timeout",
]

_HCM = "envoy.filters.network.http_connection_manager"

# The fallback when a kind declares none: Envoy's own default, made explicit.
TCP_IDLE_TIMEOUT = 3600.0

# JSON access log fields. The control plane counts per-integration cache hits from
# response_code_details: Envoy 1.40's cache_v2 counts hits per cache *type* only, while this
# field reads "cache.response_from_cache_filter" when the cache answered (hit, validated,
# or a request that waited for a concurrent fill) and "cache.insert_via_upstream" on a miss
# fetched through the cache's fill path (cache_filter.cc, responseCodeDetailsFromStatus).
ACCESS_LOG_FIELDS: dict[str, str] = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "response_code": "%RESPONSE_CODE%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "response_flags": "%RESPONSE_FLAGS%",
    "duration": "%DURATION%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "request_id": "%REQ(X-REQUEST-ID)%",
}


@functools.cache
def _log_fields() -> Any:
    # Shared (built once): copied into every access log, then given the integration id.
    return struct(ACCESS_LOG_FIELDS)


def _access_log(item: Integration, directory: str) -> Any:
    log = file_pb2.FileAccessLog(path=f"{directory}/{item.id}.log")
    json_format = log.log_format.json_format
    json_format.CopyFrom(_log_fields())
    json_format.fields["integration"].string_value = item.id
    return pack(log)


def _rds(hcm: Any, route_table: str) -> None:
    hcm.rds.config_source.CopyFrom(ads())
    hcm.rds.route_config_name = route_table


def _http_connection_manager(item: Integration, options: TranslateOptions) -> tuple[str, Any]:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=item.id,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=http_filters(item, options),
    )
    _rds(hcm, item.id)
    if options.access_log_dir is not None:
        hcm.access_log.add(
            name="envoy.access_loggers.file", typed_config=_access_log(item, options.access_log_dir)
        )
    return _HCM, pack(hcm)


def tcp_idle_timeout(item: Integration) -> float:
    """The integration's ``policies.idle_timeout``, else its kind's (0: never, which
    Envoy spells as a zero idle_timeout)."""
    if item.policies.idle_timeout is not None:
        return item.policies.idle_timeout
    spec = ADAPTERS.get(item.kind)
    return spec.tcp_idle_timeout if spec is not None else TCP_IDLE_TIMEOUT


def _tcp_proxy(item: Integration) -> tuple[str, Any]:
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=item.id, cluster=item.id, idle_timeout=duration(tcp_idle_timeout(item))
    )
    return "envoy.filters.network.tcp_proxy", pack(proxy)


def _listener(name: str, network_filter: tuple[str, Any]) -> Any:
    # Filled in place: a message given to a constructor is copied, once per level.
    result = listener_pb2.Listener(name=name, stat_prefix=name)
    filter_name, typed_config = network_filter
    result.filter_chains.add().filters.add(name=filter_name, typed_config=typed_config)
    return result


def listener(item: Integration, protocol: str, options: TranslateOptions) -> Any:
    """The listener of ``item`` (``listen_port`` must be set)."""
    assert item.listen_port is not None  # checked by translate()
    network_filter = (
        _http_connection_manager(item, options) if protocol == "http" else _tcp_proxy(item)
    )
    result = _listener(item.id, network_filter)
    socket_address = result.address.socket_address
    socket_address.address = options.listen_address
    socket_address.port_value = item.listen_port
    return result


def cache_fill_listener(item: Integration, options: TranslateOptions) -> Any:
    """The listener ``cache_v2`` sends its misses to (through cluster ``<id>_cache_fill``)."""
    name = cache_fill_name(item)
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=cache_fill_http_filters(),
    )
    # The integration's own route table: Host rewrite, timeout and retries as uncached.
    _rds(hcm, item.id)
    result = _listener(name, (_HCM, pack(hcm)))
    result.address.pipe.path = cache_fill_address(item, options)
    return result
