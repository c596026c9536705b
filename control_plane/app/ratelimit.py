"""Wiring of ``scope: global`` quotas (docs/rate-limits.md#global).

The pipeline gets the operator's ``ratelimit_address`` (the Envoys' gRPC target for
envoyproxy/ratelimit; a global integration without it is refused, never served as pod
scope). With ``ratelimit_config_dir`` set, this replica also renders the service's config
from every registry view (``control_plane.xds.ratelimit_config``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.discovery.quota import GlobalUsage
from control_plane.keys import GLOBAL_USAGE, PIPELINE, REGISTRY, SETTINGS
from control_plane.xds.ratelimit_config import RateLimitConfigWriter

__all__ = ["install_ratelimit"]


def install_ratelimit(app: web.Application) -> RateLimitConfigWriter | None:
    settings = app[SETTINGS]
    app[PIPELINE].ratelimit_address = settings.ratelimit_address
    # The fleet's usage of each global quota, read from the Redis envoyproxy/ratelimit counts
    # in (GET /integrations/{id}/rate-limit).
    redis_url = settings.ratelimit_redis_url or settings.redis_url
    if settings.ratelimit_address and redis_url:
        usage = GlobalUsage(redis_url, key_prefix=settings.ratelimit_key_prefix)
        app[GLOBAL_USAGE] = usage

        async def close(app: web.Application) -> AsyncIterator[None]:
            yield
            await usage.close()

        app.cleanup_ctx.append(close)
    if settings.ratelimit_config_dir is None:
        return None
    writer = RateLimitConfigWriter(settings.ratelimit_config_dir)
    app[REGISTRY].subscribe(writer.apply)
    return writer
