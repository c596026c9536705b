"""``install_security(app, settings, environ)``: wire authentication and the rest into an
app built by ``create_app`` (middleware, routes, start-up checks and warnings)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from control_plane.api.auth import security_middleware
from control_plane.api.caller import AUTH_HEADER
from control_plane.keys import SECURITY, STORE
from control_plane.problems import Problem, RegistryError
from control_plane.security.api_keys import (
    ApiKeyAuthenticator,
    ensure_bootstrap_key,
    load_admin_key,
)
from control_plane.security.context import SecurityContext
from control_plane.security.jwt import JwtConfig, JwtVerifier, parse_algorithms
from control_plane.security.ratelimit import RateLimiter, SharedRateLimiter
from control_plane.security.ssrf import Allowlist, UpstreamGuard
from control_plane.settings import Settings

__all__ = ["install_security", "jwt_config"]

log = logging.getLogger("control_plane.security")


def jwt_config(settings: Settings) -> JwtConfig | None:
    """JWT validation settings, defaulting issuer and JWKS URL from ``AUTH0_DOMAIN``."""
    issuer = settings.jwt_issuer or (
        f"https://{settings.auth0_domain}/" if settings.auth0_domain else None
    )
    audience = settings.jwt_audience or settings.auth0_audience
    if issuer is None or audience is None:
        return None
    return JwtConfig(
        issuer=issuer,
        audience=audience,
        jwks_url=settings.jwt_jwks_url or f"{issuer.rstrip('/')}/.well-known/jwks.json",
        algorithms=parse_algorithms(settings.jwt_algorithms),
        roles_claim=settings.jwt_roles_claim,
        tenant_claim=settings.jwt_tenant_claim,
        leeway_s=settings.jwt_leeway,
        min_refetch_s=float(settings.jwt_jwks_min_refetch),
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _add_auth_disabled_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[AUTH_HEADER] = "disabled"


def _limiter(settings: Settings) -> RateLimiter | SharedRateLimiter:
    """The API's per-principal limit: shared by every replica through Redis when Redis is
    configured, per replica otherwise."""
    local = RateLimiter(float(settings.api_rate_limit), settings.api_rate_burst)
    if settings.redis_url and local.enabled:
        return SharedRateLimiter(settings.redis_url, local)
    return local


def install_security(app: web.Application, settings: Settings, environ: Mapping[str, str]) -> None:
    enabled = settings.auth != "disabled"
    config = jwt_config(settings) if enabled else None
    try:
        admin_key_hash = load_admin_key(settings.admin_key, environ) if enabled else None
    except ValueError as exc:
        fix = (
            "set INTEGRATION_SERVICE_ADMIN_KEY to env:NAME or file:/path of a key of 24+ characters"
        )
        raise RegistryError([Problem("/admin_key", str(exc), fix)], "invalid settings") from None
    context = SecurityContext(
        enabled=enabled,
        api_keys=ApiKeyAuthenticator(app[STORE], admin_key_hash),
        jwt=JwtVerifier(config) if config else None,
        limiter=_limiter(settings),
        guard=UpstreamGuard(Allowlist.parse(settings.upstream_allowlist)),
        metrics_auth=settings.metrics_auth,
    )
    app[SECURITY] = context
    app.middlewares.append(security_middleware)
    if not enabled:
        app.on_response_prepare.append(_add_auth_disabled_header)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not enabled:
            log.warning(
                "AUTHENTICATION IS DISABLED (auth: disabled): anyone who can reach the "
                f"management API is a global admin; every response carries {AUTH_HEADER}"
            )
        elif settings.admin_key is None:
            await ensure_bootstrap_key(app[STORE])
        if enabled and context.jwt is None:
            log.info("JWT bearer tokens not accepted: set jwt_issuer/AUTH0_DOMAIN and audience")
        if settings.topology == "pod" and not _is_loopback(settings.xds_host):
            log.warning(
                "the xDS server listens on a non-loopback address: anyone who can reach it "
                "can read the configuration including SDS secrets",
                extra={"xds_host": settings.xds_host},
            )
        yield
        if context.jwt is not None:
            await context.jwt.jwks.close()
        if isinstance(context.limiter, SharedRateLimiter):
            await context.limiter.close()

    app.cleanup_ctx.append(ctx)
