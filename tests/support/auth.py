"""Identity-provider fakes: a loopback JWKS server (aiohttp) and real RSA/EC keys.

The server speaks the real wire format (RFC 7517 JWK Set at
``/.well-known/jwks.json``); tests swap the published keys to simulate rotation and read
``hits`` to see how often the service fetched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.serving import serving

__all__ = ["Issuer", "SigningKey", "hs256_with_public_key", "running_issuer", "unsigned_token"]

AUDIENCE = "https://integration-service.test/api"
ROLES_CLAIM = "https://integration-service/roles"
TENANT_CLAIM = "https://integration-service/tenant"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@dataclass
class Issuer:
    url: str  # the issuer (iss), with a trailing slash like Auth0's
    keys: list[SigningKey]
    hits: int = 0
    extra_claims: dict[str, Any] = field(default_factory=dict)

    @property
    def jwks_url(self) -> str:
        return self.url + ".well-known/jwks.json"

    def token(
        self,
        key: SigningKey | None = None,
        *,
        role: str | list[str] | None = "admin",
        tenant: str | None = "acme",
        sub: str = "auth0|user-1",
        lifetime: int = 300,
        **claims: Any,
    ) -> str:
        signer = key or self.keys[0]
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + lifetime,
        }
        if role is not None:
            payload[ROLES_CLAIM] = role
        if tenant is not None:
            payload[TENANT_CLAIM] = tenant
        payload.update(claims)
        return jwt.encode(
            payload, signer.private, algorithm=signer.alg, headers={"kid": signer.kid}
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())


def unsigned_token(issuer: Issuer, kid: str) -> str:
    """``alg: none`` with an empty signature (RFC 7519 §6 "unsecured JWT")."""
    now = int(time.time())
    payload = {
        "iss": issuer.url,
        "aud": AUDIENCE,
        "sub": "x",
        "exp": now + 300,
        ROLES_CLAIM: "admin",
        TENANT_CLAIM: "*",
    }
    return _segments({"alg": "none", "kid": kid, "typ": "JWT"}, payload) + "."


def hs256_with_public_key(issuer: Issuer, key: SigningKey) -> str:
    """The algorithm-confusion attack: HMAC-SHA256 keyed with the RSA public key's PEM."""
    now = int(time.time())
    payload = {
        "iss": issuer.url,
        "aud": AUDIENCE,
        "sub": "x",
        "exp": now + 300,
        ROLES_CLAIM: "admin",
        TENANT_CLAIM: "*",
    }
    signing_input = _segments({"alg": "HS256", "kid": key.kid, "typ": "JWT"}, payload)
    mac = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(mac)


@asynccontextmanager
async def running_issuer(*keys: SigningKey) -> AsyncIterator[Issuer]:
    issuer = Issuer(url="", keys=list(keys))

    async def jwks(request: web.Request) -> web.Response:
        issuer.hits += 1
        return web.json_response({"keys": [k.jwk() for k in issuer.keys]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    async with serving(app) as port:
        issuer.url = f"http://127.0.0.1:{port}/"
        yield issuer
