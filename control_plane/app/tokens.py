"""Wiring of the token broker (``control_plane.tokens``) into the app.

The broker hears every registry view (one refresh loop per integration in token mode),
publishes tokens through the pipeline's ``set_token`` (the integration's own SDS secret),
emits ``integration.token_refreshed`` / ``integration.token_refresh_failed`` through the
events publisher, and exposes its metrics in the app's registry. With ``REDIS_URL`` and a
``token_encryption_key`` the replicas share tokens; a background check of Envoy's stats
turns a storm of upstream 401s into one early refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from control_plane.keys import EVENTS, METRICS, PIPELINE, REGISTRY, SETTINGS, SIDECAR, TOKENS
from control_plane.problems import Problem, RegistryError
from control_plane.registry.token_mode import token_grant
from control_plane.registry.view import RegistryView
from control_plane.security.api_keys import resolve_secret_reference
from control_plane.security.ssrf import Allowlist
from control_plane.settings import Settings
from control_plane.tokens.broker import TokenBroker
from control_plane.tokens.credentials import TokenSessions, grant_values
from control_plane.tokens.metrics import TokenCollector
from control_plane.tokens.schedule import RefreshPolicy
from control_plane.tokens.shared import SharedTokens

__all__ = ["install_tokens", "refresh_policy"]

log = logging.getLogger(__name__)

_SESSIONS = web.AppKey("token_sessions", TokenSessions)
# The counters the 401-storm watch reads (cluster.<id>.upstream_rq_401).
_UPSTREAM_401 = r"^cluster\.[^.]+\.upstream_rq_401$"


def refresh_policy(settings: Settings) -> RefreshPolicy:
    try:
        return RefreshPolicy(
            fraction=settings.token_refresh_fraction,
            jitter=settings.token_refresh_jitter,
            margin=settings.token_expiry_margin,
            backoff_base=settings.token_backoff_base,
            backoff_max=settings.token_backoff_max,
        )
    except ValueError as exc:
        fix = "defaults: token_refresh_fraction 0.9, token_refresh_jitter 0.04"
        raise RegistryError(
            [Problem("/token_refresh_fraction", str(exc), fix)], "invalid settings"
        ) from None


def _shared(settings: Settings, environ: Mapping[str, str]) -> SharedTokens | None:
    if not settings.redis_url:
        return None
    if not settings.token_encryption_key:
        log.warning(
            "REDIS_URL is set but token_encryption_key is not: tokens are not shared; "
            "each replica fetches its own"
        )
        return None
    # The cipher (cryptography) and redis load only when tokens are shared (issue 20).
    import redis.asyncio as redis_asyncio

    from control_plane.tokens.cipher import TokenCipher

    try:
        cipher = TokenCipher(resolve_secret_reference(settings.token_encryption_key, environ))
    except ValueError as exc:
        message = str(exc).replace("admin_key", "token_encryption_key")
        fix = "set INTEGRATION_SERVICE_TOKEN_ENCRYPTION_KEY to env:NAME or file:/path (32+ chars)"
        raise RegistryError(
            [Problem("/token_encryption_key", message, fix)], "invalid settings"
        ) from None
    client: Any = redis_asyncio.from_url(
        settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
    )
    return SharedTokens(client, cipher, lock_ttl_s=settings.token_request_timeout + 5.0)


def install_tokens(app: web.Application, environ: Mapping[str, str]) -> TokenBroker:
    """Build the broker and subscribe it; call after ``install_events`` and
    ``install_metrics``."""
    settings = app[SETTINGS]
    policy = refresh_policy(settings)
    sessions = TokenSessions(
        Allowlist.parse(settings.upstream_allowlist), timeout_s=settings.token_request_timeout
    )
    registered: dict[str, bool] = {}
    events = app.get(EVENTS)

    async def on_event(event_type: str, data: Mapping[str, Any], tenant: str, subject: str) -> None:
        if events is not None:
            await events.publisher.emit(event_type, data, tenant=tenant, subject=subject)

    broker = TokenBroker(
        fetch=sessions.fetcher(registered),
        values=lambda item: grant_values(item, environ, app[REGISTRY].policy),
        publish=app[PIPELINE].set_token,
        policy=policy,
        shared=_shared(settings, environ),
        on_event=on_event,
    )

    async def apply(view: RegistryView) -> None:
        registered.clear()
        registered.update({i.id: i.source == "registered" for i in view.items.values()})
        await broker.apply(view)

    app[TOKENS] = broker
    app[_SESSIONS] = sessions
    app[REGISTRY].subscribe(apply)
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.registry.register(TokenCollector(broker, time.time))
    app.cleanup_ctx.append(_tokens_ctx)
    return broker


async def _storm_watch(app: web.Application) -> None:
    """One early refresh when an integration's upstream answered at least
    ``token_401_threshold`` 401s since the last look (Envoy's per-cluster
    ``upstream_rq_401``): the provider may have revoked the token before its expiry."""
    settings, broker = app[SETTINGS], app[TOKENS]
    seen: dict[str, float] = {}
    while True:
        await asyncio.sleep(settings.token_401_interval)
        watched = [i for i in app[REGISTRY].view.enabled() if token_grant(i) is not None]
        if not watched:
            continue
        try:
            async with app[SIDECAR].admin(timeout=2.0) as admin:
                # Only the 401 counters, and only those ever written (a missing one is 0):
                # the whole /stats holds Envoy's main thread, which applies xDS updates,
                # for 90 ms and more at 1,000 integrations (issue 20).
                stats = await admin.stats(_UPSTREAM_401, used_only=True, kind="Counters")
        except Exception as exc:  # Envoy down or restarting: nothing to learn this time
            log.debug("token 401 watch: no Envoy stats", extra={"error": type(exc).__name__})
            continue
        for item in watched:
            count = float(stats.get(f"cluster.{item.id}.upstream_rq_401", 0))
            before = seen.get(item.id, count)
            seen[item.id] = count
            if count - before >= settings.token_401_threshold and broker.nudge(item.id):
                log.warning(
                    "upstream 401 storm; refreshing the token early",
                    extra={"integration": item.id, "responses_401": count - before},
                )


async def _tokens_ctx(app: web.Application) -> AsyncIterator[None]:
    watcher = asyncio.create_task(_storm_watch(app), name="token-401-watch")
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    broker = app[TOKENS]
    await broker.close()
    await app[_SESSIONS].close()
    if broker.shared is not None:
        await broker.shared.close()
