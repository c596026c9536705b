"""Stripe: ``GET /v1/balance`` with the ``stripe`` SDK pointed at the sidecar.

The SDK insists on an API key and always sends ``Authorization: Bearer <key>``, while
Envoy's credential injector, with ``overwrite`` false (its default), leaves an existing
``Authorization`` header alone. So the probe gives the SDK a placeholder key and its HTTP
client drops that header before the request leaves the process: the only key on the wire
is the one Envoy injects from SDS. Stripe's error JSON (``{"error": {"type", "code",
"message"}}``) is mapped to a step and a short detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import stripe

from adapters.probes.context import ProbeContext
from adapters.probes.envoy_replies import sidecar_failure
from control_plane.probes import ProbeResult

__all__ = ["SidecarHTTPClient", "probe"]

# Never sent: SidecarHTTPClient removes the header that carries it.
_PLACEHOLDER_KEY = "sk_sidecar_injects_the_key"


class SidecarHTTPClient(stripe.AIOHTTPClient):
    """The SDK's aiohttp client minus the ``Authorization`` header (Envoy adds the real one)."""

    async def request_stream_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> Any:
        kept = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        return await super().request_stream_async(method, url, kept, post_data=post_data)


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
            http_client=SidecarHTTPClient(session=session, timeout=timeout),
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
