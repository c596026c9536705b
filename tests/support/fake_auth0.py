"""A loopback Auth0 tenant: OIDC discovery, JWKS with a real RSA key, ``/oauth/token``.

``/oauth/token`` implements the client-credentials grant as Auth0 does for M2M
applications (``client_secret_post``: form fields ``client_id``/``client_secret``) and
issues an RS256 JWT signed with the key the JWKS publishes. Every other request records
its ``Authorization`` header, so a test can check that Envoy injected the issued token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.serving import serving

__all__ = ["FakeAuth0", "running_fake_auth0"]

KID = "fake-auth0-key-1"


@dataclass
class FakeAuth0:
    client_id: str
    client_secret: str
    audience: str = "https://api.example.test/"
    port: int = 0
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    seen_authorization: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def discovery(self, request: web.Request) -> web.Response:
        self.seen_authorization.append(request.headers.get("Authorization"))
        return web.json_response(
            {
                "issuer": f"{self.url}/",
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/oauth/token",
                "jwks_uri": f"{self.url}/.well-known/jwks.json",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        self.seen_authorization.append(request.headers.get("Authorization"))
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": [jwk]})

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return web.json_response(
                {"error": "access_denied", "error_description": "Unauthorized"}, status=401
            )
        now = int(time.time())
        claims = {
            "iss": f"{self.url}/",
            "sub": f"{self.client_id}@clients",
            "aud": self.audience,
            "iat": now,
            "exp": now + 3600,
            "gty": "client-credentials",
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})
        self.issued.append(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        )


@asynccontextmanager
async def running_fake_auth0(client_id: str, client_secret: str) -> AsyncIterator[FakeAuth0]:
    fake = FakeAuth0(client_id, client_secret)
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", fake.discovery)
    app.router.add_get("/.well-known/jwks.json", fake.jwks)
    app.router.add_post("/oauth/token", fake.token)
    async with serving(app) as fake.port:
        yield fake
