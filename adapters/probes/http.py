"""Generic HTTP API: ``GET settings.probe_path`` through the sidecar.

Success is ``settings.expected_status`` when set, else any 2xx/3xx (redirects are not
followed: a 3xx proves the API answered). The app sends no credential; Envoy injects
``api_key_header`` itself, so a 401/403 from the upstream means the key Envoy holds is wrong.
"""

from __future__ import annotations

import aiohttp

from adapters.probes.context import ProbeContext
from adapters.probes.envoy_replies import sidecar_failure
from adapters.probes.result import ProbeResult

__all__ = ["get_through_sidecar", "probe"]


async def get_through_sidecar(
    ctx: ProbeContext, path: str, expected: int | None = None
) -> ProbeResult:
    timeout = aiohttp.ClientTimeout(total=ctx.timeout)
    ctx.at("connect")
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(ctx.base_url + path, allow_redirects=False) as response:
                ctx.at("request")
                body = await response.text(errors="replace")
                status = response.status
    except aiohttp.ClientConnectionError as exc:
        return ctx.fail(f"sidecar port {ctx.port} refused or closed the connection ({exc})")
    envoy = sidecar_failure(status, body)
    if envoy is not None:
        return ctx.fail(envoy.detail, envoy.step)
    if expected is not None:
        if status == expected:
            return ctx.ok(f"GET {path} -> {status}")
        return ctx.fail(f"GET {path} -> {status}, expected {expected}")
    if status in (401, 403):
        return ctx.fail(f"GET {path} -> {status}: the upstream rejected the injected key", "auth")
    if 200 <= status < 400:
        return ctx.ok(f"GET {path} -> {status}")
    return ctx.fail(f"GET {path} -> {status}")


async def probe(ctx: ProbeContext) -> ProbeResult:
    path = str(ctx.settings.get("probe_path", "/"))
    expected = ctx.settings.get("expected_status")
    return await get_through_sidecar(ctx, path, int(expected) if expected is not None else None)
