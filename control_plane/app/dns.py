"""Wiring of vetted resolution (``control_plane.discovery.dns``) into the app.

The resolver subscribes to the registry when the app is built, so it hears every view
*before* the pipeline (which subscribes when the registry starts): a new name is resolved,
and its accepted addresses handed to the pipeline, before the pipeline translates the view
that brought it. Its refresh loop runs in a cleanup context; refused addresses become
``integration.resolution_refused`` events through the events publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.discovery.dns import OnRefused, Refusal, VettedResolver
from control_plane.discovery.dns_lookup import DnsFailure, DnsLookup, parse_servers
from control_plane.events.watchers import Emitter
from control_plane.keys import DNS_RESOLVER, EVENTS, PIPELINE, REGISTRY, SECURITY, SETTINGS
from control_plane.problems import Problem, RegistryError
from control_plane.security.ssrf import Allowlist, Resolver, UpstreamGuard

__all__ = ["RESOLUTION_REFUSED", "install_dns", "refusal_publisher", "registration_resolver"]

RESOLUTION_REFUSED = "integration.resolution_refused"


def refusal_publisher(emitter: Emitter) -> OnRefused:
    """One ``integration.resolution_refused`` per integration using the refused name."""

    async def publish(report: Refusal) -> None:
        for ident, tenant in report.integrations:
            await emitter.emit(RESOLUTION_REFUSED, report.data(ident), tenant=tenant, subject=ident)

    return publish


def registration_resolver(lookup: DnsLookup) -> Resolver:
    """The SSRF guard's resolver asking ``lookup``'s servers (what it refuses to answer is
    an ``OSError``, which the guard reports as "could not be resolved now")."""

    async def resolve(host: str, port: int) -> list[str]:
        try:
            return list((await lookup(host)).addresses)
        except DnsFailure as exc:
            raise OSError(str(exc)) from None

    return resolve


def install_dns(app: web.Application) -> VettedResolver:
    """Build the resolver (settings checked here) and subscribe it; call after
    ``install_events`` so its events have a publisher, and after ``install_security``:
    with ``dns_servers`` set, registration's SSRF guard asks the same servers."""
    settings = app[SETTINGS]
    problems: list[Problem] = []
    try:
        servers = parse_servers(settings.dns_servers)
    except ValueError as exc:
        servers = []
        fix = "write addresses with optional ports, e.g. 10.0.0.2,[fd00::53]:5353"
        problems.append(Problem("/dns_servers", f"invalid dns_servers: {exc}", fix))
    if settings.dns_ttl_floor > settings.dns_ttl_ceiling:
        problems.append(
            Problem(
                "/dns_ttl_floor",
                f"dns_ttl_floor ({settings.dns_ttl_floor:g}s) is above dns_ttl_ceiling "
                f"({settings.dns_ttl_ceiling:g}s)",
                "make the floor at most the ceiling (defaults: 5 and 300)",
            )
        )
    if problems:
        raise RegistryError(problems, "invalid settings")
    lookup = DnsLookup(servers)
    security = app.get(SECURITY)
    if security is not None and servers:
        allowlist = security.guard.allowlist
        security.guard = UpstreamGuard(allowlist, resolver=registration_resolver(lookup))
    events = app.get(EVENTS)
    resolver = VettedResolver(
        lookup,
        Allowlist.parse(settings.upstream_allowlist),
        app[PIPELINE].set_resolved,
        ttl_floor_s=settings.dns_ttl_floor,
        ttl_ceiling_s=settings.dns_ttl_ceiling,
        on_refused=refusal_publisher(events.publisher) if events is not None else None,
    )
    app[DNS_RESOLVER] = resolver
    app[REGISTRY].subscribe(resolver.apply)
    app.cleanup_ctx.append(_dns_ctx)
    return resolver


async def _dns_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[DNS_RESOLVER].run(), name="vetted-resolution")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
