"""An app with authentication on (real aiohttp server, SQLite store, no Envoy), a
loopback JWKS issuer, and API keys for each role of tenant ``acme`` plus another tenant."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from control_plane.settings import Settings
from tests.support.app import app_settings
from tests.support.auth import AUDIENCE, Issuer, SigningKey, running_issuer

ADMIN_KEY = "isk_testadmin_" + secrets.token_urlsafe(32)
WEATHER_SECRET = "wk-" + secrets.token_hex(16)


def weather_doc(ident: str = "weather", tenant: str = "acme", **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "kind": "http",
        "tenant": tenant,
        "upstream": "https://api.weather.example.com",
        "credentials": {"api_key": "env:WEATHER_KEY"},
        **extra,
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(ADMIN_KEY)


@dataclass
class Secure:
    client: TestClient[Any, Any]
    issuer: Issuer
    keys: dict[str, str] = field(default_factory=dict)  # label -> full key
    ids: dict[str, str] = field(default_factory=dict)  # label -> key id

    async def new_key(self, label: str, role: str, tenant: str, **extra: Any) -> str:
        body = {"name": label, "role": role, "tenant": tenant, **extra}
        response = await self.client.post("/api-keys", json=body, headers=ADMIN)
        assert response.status == 201, await response.text()
        created = await response.json()
        self.keys[label] = created["key"]
        self.ids[label] = created["id"]
        return str(created["key"])

    def as_(self, label: str) -> dict[str, str]:
        return bearer(self.keys[label]) if label in self.keys else {}


MakeSecure = Callable[..., Awaitable[Secure]]


def secure_settings(tmp_path: Path, issuer: Issuer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "admin_key": "env:TEST_ADMIN_KEY",
        "jwt_issuer": issuer.url,
        "jwt_audience": AUDIENCE,
        "jwt_jwks_url": issuer.jwks_url,
        "jwt_jwks_min_refetch": 0,
        "api_rate_limit": 0,
        **overrides,
    }
    return app_settings(tmp_path, **values)


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    async with running_issuer(SigningKey.rsa("rsa-1"), SigningKey.ec("ec-1")) as running:
        yield running


@pytest.fixture
async def make_secure(tmp_path: Path, issuer: Issuer) -> AsyncIterator[MakeSecure]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**overrides: Any) -> Secure:
        settings = secure_settings(tmp_path / f"app{len(clients)}", issuer, **overrides)
        environ = {"TEST_ADMIN_KEY": ADMIN_KEY, "WEATHER_KEY": WEATHER_SECRET}
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, environ=environ)))
        await client.start_server()
        clients.append(client)
        return Secure(client, issuer)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def secure(make_secure: MakeSecure) -> Secure:
    """Keys: viewer/operator/admin of acme, admin of globex; integration weather (acme)."""
    s = await make_secure()
    for role in ("viewer", "operator", "admin"):
        await s.new_key(role, role, "acme")
    await s.new_key("other", "admin", "globex")
    created = await s.client.post("/integrations", json=weather_doc(), headers=ADMIN)
    assert created.status == 201, await created.text()
    return s
