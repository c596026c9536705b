"""Pure translator: registry integrations -> Envoy v3 resources (xds-protos messages).

No I/O here: credential values arrive already resolved (``secrets``, keyed by reference) and
the result is a map the snapshot layer consumes. One module per resource type:
``clusters``, ``endpoints``, ``listeners`` (+ ``http_filters``), ``routes``, ``secrets``;
``static`` renders the same resources as a static Envoy bootstrap.

Naming (Grafana and the status endpoints rely on it): cluster, listener, route table and
stat prefix are all the integration id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters import adapter_for
from control_plane.model import Integration
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from control_plane.xds.snapshot import content_version
from control_plane.xds.translate.clusters import cache_fill_cluster, cluster
from control_plane.xds.translate.endpoints import load_assignment, vetted_assignment, vetted_name
from control_plane.xds.translate.global_limit import RATELIMIT_CLUSTER, is_global, ratelimit_cluster
from control_plane.xds.translate.listeners import cache_fill_listener, listener
from control_plane.xds.translate.options import (
    Resources,
    SecretValues,
    TranslateOptions,
    TranslateResult,
)
from control_plane.xds.translate.routes import route_configuration
from control_plane.xds.translate.secrets import SecretBook

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "ROUTE",
    "SECRET",
    "Resources",
    "SecretValues",
    "TranslateOptions",
    "TranslateResult",
    "check_ports",
    "render_static_bootstrap",
    "translate",
]


def render_static_bootstrap(resources: Resources, admin_port: int) -> dict[str, Any]:
    """``static.render_static_bootstrap``, imported when first called: the bootstrap
    message types (``bootstrap_pb2`` and what it names) serve ``render`` only, never the
    running service (issue 20)."""
    from control_plane.xds.translate.static import render_static_bootstrap as render

    return render(resources, admin_port)


def check_ports(enabled: Sequence[Integration]) -> None:
    """Raise ValueError unless every enabled integration has a listen_port of its own.

    The only check that spans integrations; everything else an integration turns into is
    named by its id, so ``translate`` of one integration alone gives exactly its share of
    ``translate`` of all of them (the pipeline relies on it to translate incrementally).
    """
    owners: dict[int, str] = {}
    for item in enabled:
        if item.listen_port is None:
            raise ValueError(f"integration {item.id!r} has no listen_port assigned")
        if item.listen_port in owners:
            raise ValueError(
                f"integrations {owners[item.listen_port]!r} and {item.id!r} "
                f"share listen_port {item.listen_port}"
            )
        owners[item.listen_port] = item.id


def translate(
    integrations: Sequence[Integration],
    secrets: SecretValues,
    options: TranslateOptions | None = None,
) -> TranslateResult:
    """Envoy resources for the enabled ``integrations``.

    Raises ValueError when an enabled integration has no (or a duplicate) ``listen_port``.
    A credential whose value is missing from ``secrets`` is left out (with its filter or TLS
    setting) and reported in ``warnings``. The same input gives byte-identical resources.
    """
    options = options or TranslateOptions()
    enabled = sorted((i for i in integrations if i.enabled), key=lambda i: i.id)
    check_ports(enabled)
    book = SecretBook(secrets, options.tokens)
    resources: Resources = {CLUSTER: {}, ENDPOINT: {}, LISTENER: {}, ROUTE: {}, SECRET: {}}
    # Listeners name this replica's directories; their versions come from a neutral copy.
    neutral = options.replica_neutral()
    neutral_versions: dict[str, str] = {}
    for item in enabled:
        protocol = adapter_for(item.kind).protocol_for(item.settings)
        resources[CLUSTER][item.id] = cluster(item, protocol, options, book)
        if item.upstream.discovery == "consul":
            endpoints = options.endpoints.get(item.id, ())
            if not endpoints:
                book.warnings.append(f"{item.id}: no endpoints discovered yet; requests get 503")
            resources[ENDPOINT][item.id] = load_assignment(item.id, endpoints)
        elif (name := vetted_name(item)) is not None:
            if not options.resolved.get(name):
                book.warnings.append(f"{item.id}: no vetted address for {name}; requests get 503")
            resources[ENDPOINT][item.id] = vetted_assignment(item, name, options)
        if protocol == "http" and is_global(item):  # global_limit.py
            if options.ratelimit_address is None:
                raise ValueError(
                    f"integration {item.id!r} has a global rate limit but no rate-limit "
                    "service is configured (set ratelimit_address, "
                    "INTEGRATION_SERVICE_RATELIMIT_ADDRESS)"
                )
            resources[CLUSTER][RATELIMIT_CLUSTER] = ratelimit_cluster(options.ratelimit_address)
        resources[LISTENER][item.id] = listener(item, protocol, options)
        if neutral is not None:
            neutral_versions[item.id] = content_version(listener(item, protocol, neutral))
        if protocol == "http":
            resources[ROUTE][item.id] = route_configuration(item)
            if item.policies.cache.enabled:  # the cache's miss path (see http_filters)
                fill = cache_fill_listener(item, options)
                resources[LISTENER][fill.name] = fill
                resources[CLUSTER][fill.name] = cache_fill_cluster(item, options)
                if neutral is not None:
                    neutral_versions[fill.name] = content_version(
                        cache_fill_listener(item, neutral)
                    )
    resources[CLUSTER] = dict(sorted(resources[CLUSTER].items()))
    resources[SECRET] = dict(sorted(book.secrets.items()))
    return TranslateResult(
        resources=resources, warnings=book.warnings, versions={LISTENER: neutral_versions}
    )
