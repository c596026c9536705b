"""Wiring of Consul into the app, only when ``CONSUL_HOST`` is set.

Registration runs in the background (Consul may come up after us) and deregistration is
the first thing a graceful shutdown does, so Consul stops routing to this instance before
it stops answering. Catalog endpoints of ``discovery: consul`` integrations go to the
pipeline, which serves them to Envoy over EDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane import __version__
from control_plane.discovery.consul import (
    ConsulClient,
    ConsulDiscovery,
    ConsulRuntime,
    ServiceRegistration,
)
from control_plane.keys import CONSUL, PIPELINE, REGISTRY, SETTINGS
from control_plane.settings import Settings

__all__ = ["install_consul"]

SERVICE_NAME = "integration-service"
_WILDCARDS = ("", "0.0.0.0", "::")


def service_id(settings: Settings, hostname: str) -> str:
    """Unique per instance (Consul keys agent services by ID) and stable across restarts."""
    return f"{SERVICE_NAME}-{hostname}-{settings.port}"


async def advertise_address(host: str) -> str:
    """The address Consul should use: the bound one, or this host's when bound to all."""
    if host not in _WILDCARDS:
        return host
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(socket.gethostname(), None, family=socket.AF_INET)
    except OSError:
        return "127.0.0.1"
    return str(infos[0][4][0]) if infos else "127.0.0.1"


def install_consul(app: web.Application) -> ConsulRuntime | None:
    settings = app[SETTINGS]
    if not settings.consul_host:
        return None
    client = ConsulClient(settings.consul_host, settings.consul_port)
    runtime = ConsulRuntime(
        client=client,
        registration=ServiceRegistration(
            client,
            service_id=service_id(settings, socket.gethostname()),
            name=SERVICE_NAME,
            port=settings.port,
            address=settings.host,
            version=__version__,
            meta={"envoy_node_id": settings.envoy_node_id},
        ),
        discovery=ConsulDiscovery(client, app[PIPELINE].set_endpoints),
    )
    app[CONSUL] = runtime
    app.cleanup_ctx.append(_consul_ctx)
    return runtime


async def _consul_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[CONSUL]
    registry = app[REGISTRY]
    registry.subscribe(runtime.discovery.apply)
    await runtime.discovery.apply(registry.view)
    runtime.registration.address = await advertise_address(runtime.registration.address)
    register = asyncio.create_task(
        runtime.registration.register_until_done(), name="consul-register"
    )
    yield
    register.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await register
    await runtime.registration.deregister()
    await runtime.discovery.stop()
    await runtime.client.close()
