"""Stripe: ``GET /v1/balance`` with the ``stripe`` SDK pointed at the sidecar.

The SDK insists on an API key and always sends ``Authorization: Bearer <key>``: like an
application, the probe gives it a placeholder, and Envoy's credential injector (configured
with ``overwrite: true``) replaces the header with the real key from SDS, so the stock SDK
works unchanged and no key ever lives in the app. Stripe's error JSON (``{"error": {"type", "code",
"message"}}``) is mapped to a step and a short detail.
"""

from __future__ import annotations

import aiohttp
import stripe

from adapters.probes.context import ProbeContext
from adapters.probes.envoy_replies import sidecar_failure
from adapters.probes.result import ProbeResult

__all__ = ["probe"]

# What the app holds instead of a key: Envoy overwrites the header that carries it.
_PLACEHOLDER_KEY = "sk_sidecar_injects_the_key"


def _stripe_detail(exc: stripe.StripeError) -> str:
    error = exc.error
    kind = getattr(error, "type", None) or type(exc).__name__
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or exc.user_message or "no message"
    where = f" (request {exc.request_id})" if exc.request_id else ""
    return f"Stripe {exc.http_status} {kind}{f'/{code}' if code else ''}: {message}{where}"


def _failure(ctx: ProbeContext, exc: stripe.StripeError) -> ProbeResult:
    body = exc.http_body if isinstance(exc.http_body, str) else ""
    envoy = sidecar_failure(exc.http_status or 0, body)
    if envoy is not None:
        return ctx.fail(envoy.detail, envoy.step)
    if isinstance(exc, stripe.APIConnectionError):
        return ctx.fail(f"cannot reach the sidecar port {ctx.port}: {exc.user_message}", "connect")
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ctx.fail(_stripe_detail(exc) + " -- check the api_key Envoy injects", "auth")
    if isinstance(exc, stripe.RateLimitError):
        return ctx.fail(_stripe_detail(exc) + " -- rate limited", "request")
    return ctx.fail(_stripe_detail(exc), "request")


async def probe(ctx: ProbeContext) -> ProbeResult:
    timeout = aiohttp.ClientTimeout(total=ctx.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = stripe.StripeClient(
            _PLACEHOLDER_KEY,
            base_addresses={"api": ctx.base_url},
            http_client=stripe.AIOHTTPClient(session=session, timeout=timeout),
            max_network_retries=0,
            stripe_version=ctx.settings.get("api_version"),
        )
        ctx.at("request")
        try:
            balance = await client.v1.balance.retrieve_async()
        except stripe.StripeError as exc:
            return _failure(ctx, exc)
    currencies = sorted({entry.currency for entry in balance.available})
    return ctx.ok(
        f"GET /v1/balance -> 200 (livemode={balance.livemode}, "
        f"currencies={','.join(currencies) or 'none'})"
    )
