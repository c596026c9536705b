"""``GET /metrics`` and the middleware that times every management-API request.

Latency is labelled with the route's *template* (``/integrations/{integration_id}``), never
the raw path, so the series count stays bounded whatever ids clients send; requests that
match no route are labelled ``<unmatched>``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from control_plane.api.openapi.spec import operation
from control_plane.keys import FLEET, METRICS, PIPELINE, PROBES, REGISTRY, STORE_HEALTH, XDS_CACHE
from control_plane.observability.metrics import ConfigSample, MetricSources, ServiceMetrics

__all__ = ["install_metrics", "metrics_middleware", "route_template", "routes"]

UNMATCHED = "<unmatched>"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

routes = web.RouteTableDef()


def route_template(request: web.Request) -> str:
    """The canonical path of the matched resource, or ``<unmatched>``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app.get(METRICS)
    if metrics is None:
        return await handler(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.observe_request(
            route_template(request), request.method, status, time.perf_counter() - started
        )


@routes.get("/metrics")
@operation(
    "getMetrics",
    "service",
    "Prometheus metrics",
    "Prometheus text format; OpenMetrics when the Accept header asks for it.",
    {
        "200": {
            "description": "Metrics",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        }
    },
)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, or OpenMetrics when the scraper asks for it."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


def _refusals(app: web.Application) -> dict[str, int]:
    fleet = app.get(FLEET)
    gate = fleet.gate if fleet is not None else None
    return dict(gate.refusals) if gate is not None else {}


def install_metrics(app: web.Application) -> ServiceMetrics:
    """Create the app's metrics and attach them to its xDS status, registry, config, probes.

    Call after the registry, probe book, xDS cache and pipeline keys are set.
    """
    service = ServiceMetrics()

    def config() -> ConfigSample:
        state = app[PIPELINE].state
        return ConfigSample(state.snapshot_version, state.error, state.pushes)

    service.attach(
        MetricSources(
            xds=app[XDS_CACHE].status,
            integrations=lambda: list(app[REGISTRY].view.items.values()),
            config=config,
            probes=app[PROBES],
            store_up=lambda: app[STORE_HEALTH].up,
            xds_refusals=lambda: _refusals(app),
        )
    )
    app[METRICS] = service
    return service
