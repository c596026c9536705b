"""A loopback OAuth2 token endpoint and the API it protects, speaking the real protocol.

``POST /oauth/token`` is the client-credentials grant (RFC 6749 section 4.4): a
form-encoded body, client authentication by ``client_secret_basic``, ``client_secret_post``
or ``private_key_jwt`` (RFC 7523, checked against the client's public key), and a JSON
answer ``{"access_token", "token_type", "expires_in"}``. Like Auth0 it refuses a request
without ``audience`` (403 ``access_denied``) when ``require_audience`` is set. Switches:
``fail`` (503 ``temporarily_unavailable``) and ``hang`` (the request waits until the switch
is turned off or the client gives up). Counters: every request's form and headers.

Every other path is the protected API: it answers 200 only with ``Authorization: Bearer
<a token this endpoint issued, not expired>`` and records each request's verdict (``ok``,
``missing``, ``expired``, ``unknown``), so a test can prove that no request ever arrived
with an expired or missing token.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jwt
from aiohttp import web

from tests.support.serving import serving

__all__ = ["FakeTokenEndpoint", "running_token_endpoint"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class FakeTokenEndpoint:
    client_id: str = "fake-client"
    client_secret: str = "fake-client-secret-value"
    expires_in: float = 3600
    require_audience: bool = False
    audience: str | None = None
    # private_key_jwt: the client's public key (PEM) that assertions are checked against.
    public_key: str | None = None
    fail: bool = False
    hang: bool = False
    port: int = 0
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)  # token -> expiry (time.time())
    verdicts: Counter[str] = field(default_factory=Counter)
    api_requests: list[dict[str, Any]] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    @property
    def requests_served(self) -> int:
        return len(self.token_requests)

    def set_hang(self, hang: bool) -> None:
        self.hang = hang
        if hang:
            self._released.clear()
        else:
            self._released.set()

    def _client(self, request: web.Request, form: dict[str, str]) -> str | None:
        """The authenticated client id, or None."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            except ValueError:
                return None
            ok = unquote(user) == self.client_id and unquote(password) == self.client_secret
            return self.client_id if ok else None
        if form.get("client_assertion_type") == ASSERTION_TYPE:
            if self.public_key is None:
                return None
            try:
                claims = jwt.decode(
                    form.get("client_assertion", ""),
                    self.public_key,
                    algorithms=["RS256", "PS256", "ES256"],
                    audience=self.token_url,
                    options={"require": ["iss", "sub", "aud", "exp", "jti"]},
                )
            except jwt.PyJWTError:
                return None
            ok = claims["iss"] == claims["sub"] == self.client_id
            return self.client_id if ok else None
        ok = form.get("client_id") == self.client_id and form.get("client_secret") == (
            self.client_secret
        )
        return self.client_id if ok else None

    async def token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return web.json_response({"error": "invalid_request"}, status=400)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(
            {"form": form, "headers": dict(request.headers), "at": time.time()}
        )
        if self.hang:
            await self._released.wait()
        if self.fail:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self._client(request, form) is None:
            return web.json_response(
                {"error": "invalid_client", "error_description": "Unauthorized"}, status=401
            )
        if self.require_audience and not form.get("audience"):
            # Auth0: a client-credentials request must name the API (or the tenant must
            # have a default audience).
            return web.json_response(
                {
                    "error": "access_denied",
                    "error_description": "No audience parameter was provided, and no default "
                    "audience has been configured",
                },
                status=403,
            )
        if self.audience is not None and form.get("audience") != self.audience:
            return web.json_response(
                {"error": "access_denied", "error_description": "Service not found"}, status=403
            )
        token = "fake_at_" + secrets.token_urlsafe(24)
        self.issued[token] = time.time() + self.expires_in
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )

    def verdict(self, authorization: str | None, at: float) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            return "missing"
        expiry = self.issued.get(authorization[len("Bearer ") :])
        if expiry is None:
            return "unknown"
        return "ok" if at < expiry else "expired"

    async def api(self, request: web.Request) -> web.Response:
        at = time.time()
        verdict = self.verdict(request.headers.get("Authorization"), at)
        self.verdicts[verdict] += 1
        self.api_requests.append({"path": request.path_qs, "verdict": verdict, "at": at})
        if verdict != "ok":
            return web.json_response({"error": "invalid_token", "verdict": verdict}, status=401)
        return web.json_response({"ok": True})


@asynccontextmanager
async def running_token_endpoint(**options: Any) -> AsyncIterator[FakeTokenEndpoint]:
    fake = FakeTokenEndpoint(**options)
    fake._released.set()
    app = web.Application()
    app.router.add_post("/oauth/token", fake.token)
    app.router.add_route("*", "/{tail:.*}", fake.api)
    async with serving(app, shutdown_timeout=0.5) as fake.port:
        try:
            yield fake
        finally:
            fake.set_hang(False)
