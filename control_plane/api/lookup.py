"""What the per-integration handlers share: the integration named by the URL (404 for
unknown ids and, through the auth middleware, for other tenants') and Envoy's admin API."""

from __future__ import annotations

from aiohttp import web

from control_plane.api.problems import problem_response
from control_plane.keys import REGISTRY, SIDECAR
from control_plane.model import Integration
from control_plane.sidecar.admin import EnvoyAdminError
from control_plane.store.protocol import NotFoundError

__all__ = ["MAX_ID", "envoy_down", "envoy_stats", "integration_of"]


# Ids are DNS labels (the registry schema); a longer one cannot exist.
MAX_ID = 63


def integration_of(request: web.Request) -> Integration:
    ident = request.match_info["integration_id"]
    item = request.app[REGISTRY].view.get(ident)
    if item is None:
        if len(ident) > MAX_ID:  # do not echo kilobytes back
            raise NotFoundError(
                f"no integration {ident[:MAX_ID]!r}... ({len(ident)} characters): ids are DNS "
                f"labels of at most {MAX_ID} characters"
            )
        raise NotFoundError(f"no integration {ident!r}")
    return item


async def envoy_stats(request: web.Request) -> dict[str, int | float] | None:
    """Envoy's counters and gauges, or None while its admin API is unreachable."""
    try:
        async with request.app[SIDECAR].admin() as admin:
            return await admin.stats()
    except EnvoyAdminError:
        return None


def envoy_down() -> web.Response:
    return problem_response(
        503,
        "Envoy's admin API is not reachable, so its live counters cannot be read; "
        "check /health/ready",
        headers={"Retry-After": "2"},
    )
