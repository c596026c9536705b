"""One ``RouteConfiguration`` per HTTP integration, named by its id (served over RDS).

Three routes, first match wins: idempotent methods, requests carrying ``Idempotency-Key``
(both with the retry policy), then everything else without retries -- a retried POST could
charge a card twice. A route match ANDs its header matchers, so "method is idempotent OR
the key is present" takes two routes.
"""

from __future__ import annotations

import functools
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from control_plane.model import Integration
from control_plane.xds.translate.messages import duration

__all__ = ["IDEMPOTENT_METHODS", "route_configuration"]

IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")


def _retry_policy(item: Integration) -> Any:
    retries = item.policies.retries
    policy = rc.RetryPolicy(
        retry_on=",".join(retries.retry_on),
        retriable_status_codes=retries.retriable_status_codes,
    )
    policy.num_retries.value = retries.max_retries
    # Honour the upstream's Retry-After (seconds), but never wait longer than the ceiling.
    back_off = policy.rate_limited_retry_back_off
    back_off.reset_headers.add(name="retry-after", format=rc.RetryPolicy.ResetHeaderFormat.SECONDS)
    back_off.max_interval.CopyFrom(duration(retries.retry_after_max))
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    return policy


def _action(item: Integration) -> Any:
    return rc.RouteAction(
        cluster=item.id,
        timeout=duration(item.policies.timeout),
        # Envoy forwards the app's Host (127.0.0.1:<port>); SaaS edges route by their own.
        host_rewrite_literal=item.upstream.authority,
    )


@functools.cache
def _matches() -> tuple[Any, Any, Any]:
    """The three routes' matches (shared, built once: the routes copy them)."""
    methods = rc.HeaderMatcher(
        name=":method",
        string_match=string_pb2.StringMatcher(
            safe_regex=regex_pb2.RegexMatcher(regex=f"^({'|'.join(IDEMPOTENT_METHODS)})$")
        ),
    )
    key = rc.HeaderMatcher(name="idempotency-key", present_match=True)
    return (
        rc.RouteMatch(prefix="/", headers=[methods]),
        rc.RouteMatch(prefix="/", headers=[key]),
        rc.RouteMatch(prefix="/"),
    )


def route_configuration(item: Integration) -> Any:
    by_method, by_key, default = _matches()
    plain = _action(item)
    retrying = _action(item)
    retrying.retry_policy.CopyFrom(_retry_policy(item))
    config = route_pb2.RouteConfiguration(name=item.id)
    # Filled in place: a message given to a constructor is copied, once per level.
    host = config.virtual_hosts.add(name=item.id, domains=["*"])
    host.routes.add(name="idempotent-method", match=by_method, route=retrying)
    host.routes.add(name="idempotency-key", match=by_key, route=retrying)
    host.routes.add(name="default", match=default, route=plain)
    return config
