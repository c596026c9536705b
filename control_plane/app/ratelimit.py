"""Wiring of ``scope: global`` quotas (docs/rate-limits.md#global).

The pipeline gets the operator's ``ratelimit_address`` (the Envoys' gRPC target for
envoyproxy/ratelimit; a global integration without it is refused, never served as pod
scope). With ``ratelimit_config_dir`` set, this replica also renders the service's config
from every registry view (``control_plane.xds.ratelimit_config``).
"""

from __future__ import annotations

from aiohttp import web

from control_plane.keys import PIPELINE, REGISTRY, SETTINGS
from control_plane.xds.ratelimit_config import RateLimitConfigWriter

__all__ = ["install_ratelimit"]


def install_ratelimit(app: web.Application) -> RateLimitConfigWriter | None:
    settings = app[SETTINGS]
    app[PIPELINE].ratelimit_address = settings.ratelimit_address
    if settings.ratelimit_config_dir is None:
        return None
    writer = RateLimitConfigWriter(settings.ratelimit_config_dir)
    app[REGISTRY].subscribe(writer.apply)
    return writer
