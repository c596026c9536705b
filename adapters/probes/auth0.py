"""Auth0: OIDC discovery, then the JWKS it names, both through the sidecar (pyjwt parses
the key set). The M2M token is minted by the control plane's token broker (client
credentials, RFC 6749 section 4.4, with the audience) and injected by Envoy into *every*
request of the cluster; without a valid token requests go out without one, so the token
step is judged by the broker's state (``ctx.token_state``), which names the failure.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

from adapters.probes.context import ProbeContext
from adapters.probes.envoy_replies import sidecar_failure
from adapters.probes.result import ProbeResult

__all__ = ["DISCOVERY_PATH", "probe"]

DISCOVERY_PATH = "/.well-known/openid-configuration"


async def _get_json(
    ctx: ProbeContext, session: aiohttp.ClientSession, path: str, step: str
) -> tuple[Any, ProbeResult | None]:
    ctx.at(step)
    try:
        async with session.get(ctx.base_url + path, allow_redirects=False) as response:
            body = await response.text(errors="replace")
            status = response.status
    except aiohttp.ClientConnectionError as exc:
        return None, ctx.fail(f"sidecar port {ctx.port} refused or closed the connection ({exc})")
    envoy = sidecar_failure(status, body, credential_step="token")
    if envoy is not None:
        return None, ctx.fail(envoy.detail, envoy.step)
    if status != 200:
        return None, ctx.fail(f"GET {path} -> {status}")
    try:
        return json.loads(body), None
    except ValueError:
        return None, ctx.fail(f"GET {path} -> 200 but the body is not JSON")


def _uses_m2m(ctx: ProbeContext) -> bool:
    return {"client_id", "client_secret"} <= set(ctx.integration.credentials)


def _token_problem(ctx: ProbeContext) -> ProbeResult | None:
    if not _uses_m2m(ctx) or ctx.token_state is None:
        return None
    state, error = ctx.token_state
    if state in ("valid", "failing", "refreshing"):
        return None  # a valid token is injected (failing: the current one, still valid)
    return ctx.fail(f"no valid M2M token ({state}): {error or 'not obtained yet'}", "token")


async def probe(ctx: ProbeContext) -> ProbeResult:
    if (failed := _token_problem(ctx)) is not None:
        return failed
    timeout = aiohttp.ClientTimeout(total=ctx.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        config, failed = await _get_json(ctx, session, DISCOVERY_PATH, "discovery")
        if failed is not None:
            return failed
        if not isinstance(config, dict) or "jwks_uri" not in config or "issuer" not in config:
            return ctx.fail("the discovery document has no issuer/jwks_uri", "discovery")
        jwks_uri = urlsplit(str(config["jwks_uri"]))
        # The sidecar fronts the tenant's host only; a key set elsewhere cannot be reached.
        if jwks_uri.hostname not in (None, ctx.integration.upstream.host):
            return ctx.fail(
                f"jwks_uri is on {jwks_uri.hostname}, not on the tenant host "
                f"{ctx.integration.upstream.host} the sidecar fronts",
                "jwks",
            )
        path = jwks_uri.path + (f"?{jwks_uri.query}" if jwks_uri.query else "")
        keys, failed = await _get_json(ctx, session, path or "/", "jwks")
        if failed is not None:
            return failed
    try:
        key_set = jwt.PyJWKSet.from_dict(keys)
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError) as exc:
        return ctx.fail(f"the JWKS has no usable signing key: {exc}", "jwks")
    kids = ",".join(sorted(str(k.key_id) for k in key_set.keys))
    token = (
        "M2M token minted by the control plane, injected by Envoy"
        if _uses_m2m(ctx)
        else "no client credentials configured, so no M2M token"
    )
    ctx.at("token" if _uses_m2m(ctx) else "jwks")
    return ctx.ok(f"issuer {config['issuer']}; JWKS {len(key_set.keys)} key(s) [{kids}]; {token}")
