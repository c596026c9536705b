"""Email: SMTP (aiosmtplib ``EHLO``, ``STARTTLS`` when offered, ``NOOP``) or an HTTP API.

SMTP goes through a ``tcp_proxy``. STARTTLS upgrades *inside* SMTP (RFC 3207), so Envoy
cannot originate it: the TLS session is end to end between this client and the server,
which is verified against the name it was configured under (``tls.sni`` or the upstream
host, never the loopback sidecar address) and the integration's ``tls.ca_bundle`` when set.
The HTTP transport is a plain ``GET probe_path`` with the API key injected by Envoy.
"""

from __future__ import annotations

import contextlib
import ssl

import aiosmtplib

from adapters.probes.context import ProbeContext
from adapters.probes.http import get_through_sidecar
from adapters.probes.result import ProbeResult

__all__ = ["probe"]

_SMTP_ERRORS = (aiosmtplib.SMTPException, ssl.SSLError, OSError)


def _tls_context(ctx: ProbeContext) -> ssl.SSLContext:
    tls = ctx.integration.upstream.tls
    ca = ctx.resolve(tls.ca_bundle) if tls.ca_bundle is not None else None
    context = ssl.create_default_context(cadata=ca)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _smtp(ctx: ProbeContext) -> ProbeResult:
    up = ctx.integration.upstream
    client = aiosmtplib.SMTP(
        hostname=ctx.host,
        port=ctx.port,
        timeout=ctx.timeout,
        use_tls=False,
        start_tls=False,  # done below, so a failure is reported as its own step
        local_hostname="integration-service-probe",
    )
    try:
        ctx.at("connect")
        try:
            greeting = await client.connect()
        except _SMTP_ERRORS as exc:
            return ctx.fail(
                f"no SMTP greeting through sidecar port {ctx.port}: {exc} "
                "(upstream down or unreachable?)"
            )
        steps = [f"greeting {greeting.code}"]
        try:
            ctx.at("ehlo")
            await client.ehlo()
            steps.append("EHLO")
            if client.supports_extension("starttls"):
                ctx.at("starttls")
                await client.starttls(
                    server_hostname=up.tls.sni or up.host, tls_context=_tls_context(ctx)
                )
                ctx.at("ehlo")
                await client.ehlo()
                steps.append("STARTTLS")
            ctx.at("noop")
            reply = await client.noop()
            steps.append(f"NOOP {reply.code}")
        except _SMTP_ERRORS as exc:
            return ctx.fail(f"{type(exc).__name__}: {exc}")
        return ctx.ok(", ".join(steps))
    finally:
        with contextlib.suppress(*_SMTP_ERRORS):
            if client.is_connected:
                await client.quit()
        client.close()


async def probe(ctx: ProbeContext) -> ProbeResult:
    if ctx.settings.get("transport", "smtp") == "http":
        return await get_through_sidecar(ctx, str(ctx.settings.get("probe_path", "/")))
    return await _smtp(ctx)
