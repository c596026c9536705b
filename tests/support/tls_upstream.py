"""A loopback HTTPS upstream with a certificate from a test CA (trustme), optionally
requiring a client certificate (mTLS). It records the client certificate's names."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiohttp import web

from tests.support.serving import serving

__all__ = ["TlsUpstream", "running_tls_upstream"]


@dataclass
class TlsUpstream:
    port: int = 0
    client_subjects: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        self.client_subjects.append(peer.get("subjectAltName") if peer else None)
        return web.json_response({"path": request.path})


@asynccontextmanager
async def running_tls_upstream(
    ca: trustme.CA, name: str, *, require_client_cert: bool = False
) -> AsyncIterator[TlsUpstream]:
    """Serve HTTPS on 127.0.0.1 with a certificate for ``name`` signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    if require_client_cert:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    upstream = TlsUpstream()
    app = web.Application()
    app.router.add_get("/{tail:.*}", upstream.handle)
    async with serving(app, ssl_context=context) as upstream.port:
        yield upstream
