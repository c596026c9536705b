"""A loopback Stripe: ``GET /v1/balance`` with Stripe's auth and error format.

Stripe authenticates with ``Authorization: Bearer <secret key>`` and answers a bad key
with 401 and ``{"error": {"type": "invalid_request_error", "message": ...}}``. The fake
records the headers that reached it, so a test can prove the key came from Envoy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.serving import serving

__all__ = ["FakeStripe", "running_fake_stripe"]


@dataclass
class FakeStripe:
    api_key: str
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        body: dict[str, Any] = {"error": {"type": kind, "message": message}}
        return web.json_response(body, status=status, headers={"Request-Id": "req_fake123"})

    async def balance(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(401, "invalid_request_error", "You did not provide an API key.")
        if auth != f"Bearer {self.api_key}":
            # Stripe shows the last four characters only.
            shown = f"sk_test_****{auth[-4:]}"
            return self._error(401, "invalid_request_error", f"Invalid API Key provided: {shown}")
        return web.json_response(
            {
                "object": "balance",
                "available": [{"amount": 1200, "currency": "usd", "source_types": {"card": 1200}}],
                "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                "livemode": False,
            }
        )


@asynccontextmanager
async def running_fake_stripe(api_key: str) -> AsyncIterator[FakeStripe]:
    fake = FakeStripe(api_key)
    app = web.Application()
    app.router.add_get("/v1/balance", fake.balance)
    async with serving(app) as fake.port:
        yield fake
