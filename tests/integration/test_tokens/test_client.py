"""The grant against a loopback token endpoint speaking the real protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control_plane.model import CredentialRef, Integration, TlsSettings, Upstream
from control_plane.registry.token_mode import token_grant
from control_plane.security.ssrf import Allowlist
from control_plane.tokens.client import GuardedResolver, TokenError, fetch_token
from tests.support.fake_token_endpoint import FakeTokenEndpoint, running_token_endpoint


def _item(token_url: str, **token: object) -> Integration:
    return Integration(
        id="billing",
        kind="http",
        upstream=Upstream("api.example.test", 443, "https", TlsSettings()),
        credentials={
            "client_id": CredentialRef("env:CID"),
            "client_secret": CredentialRef("env:CSECRET"),
            "client_assertion_key": CredentialRef("file:/keys/client.pem"),
        },
        settings={"token": {"token_url": token_url, **token}},
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTokenEndpoint]:
    async with running_token_endpoint(expires_in=120) as endpoint:
        yield endpoint


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _values(fake: FakeTokenEndpoint, key: str = "") -> dict[str, str]:
    return {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "client_assertion_key": key,
    }


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_client_secret_methods(
    fake: FakeTokenEndpoint, session: aiohttp.ClientSession, method: str
) -> None:
    grant = token_grant(
        _item(
            fake.token_url,
            auth_method=method,
            scopes=["read:invoices", "write:invoices"],
            audience="https://api.example.test/",
            params={"resource": "urn:billing"},
        )
    )
    assert grant is not None
    minted = await fetch_token(session, grant, _values(fake))
    assert fake.verdict(f"Bearer {minted.token}", minted.issued_at) == "ok"
    assert minted.expires_at - minted.issued_at == pytest.approx(120)
    request = fake.token_requests[-1]
    form, headers = request["form"], request["headers"]
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "read:invoices write:invoices"
    assert form["audience"] == "https://api.example.test/"
    assert form["resource"] == "urn:billing"
    if method == "client_secret_basic":
        assert headers["Authorization"].startswith("Basic ")
        assert "client_secret" not in form
    else:
        assert form["client_secret"] == fake.client_secret
        assert "Authorization" not in headers


async def test_private_key_jwt(fake: FakeTokenEndpoint, session: aiohttp.ClientSession) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    fake.public_key = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    grant = token_grant(_item(fake.token_url, auth_method="private_key_jwt"))
    assert grant is not None
    minted = await fetch_token(session, grant, _values(fake, pem))
    assert minted.token in fake.issued
    form = fake.token_requests[-1]["form"]
    assert "client_secret" not in form and form["client_assertion"].count(".") == 2


async def test_auth0_refuses_a_request_without_audience(
    fake: FakeTokenEndpoint, session: aiohttp.ClientSession
) -> None:
    fake.require_audience = True
    grant = token_grant(_item(fake.token_url))
    assert grant is not None
    with pytest.raises(TokenError, match=r"HTTP 403 \(access_denied\)"):
        await fetch_token(session, grant, _values(fake))


async def test_failures_name_the_status_never_a_secret(
    fake: FakeTokenEndpoint, session: aiohttp.ClientSession
) -> None:
    grant = token_grant(_item(fake.token_url))
    assert grant is not None
    fake.fail = True
    with pytest.raises(TokenError, match="503") as failed:
        await fetch_token(session, grant, _values(fake))
    assert fake.client_secret not in str(failed.value)
    fake.fail = False
    wrong = {**_values(fake), "client_secret": "wrong-secret-value"}
    with pytest.raises(TokenError, match=r"401 \(invalid_client\)") as refused:
        await fetch_token(session, grant, wrong)
    assert "wrong-secret-value" not in str(refused.value)


async def test_a_hanging_endpoint_times_out(
    fake: FakeTokenEndpoint, session: aiohttp.ClientSession
) -> None:
    grant = token_grant(_item(fake.token_url))
    assert grant is not None
    fake.set_hang(True)
    with pytest.raises(TokenError, match=r"did not answer within 0\.5s"):
        await fetch_token(session, grant, _values(fake), timeout_s=0.5)
    assert fake.requests_served == 1


async def test_a_redirect_is_not_followed(session: aiohttp.ClientSession) -> None:
    """A 307 would re-send the form, client secret included, to the Location."""
    hits: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/oauth/token":
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.json_response({"access_token": "x", "token_type": "bearer"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        grant = token_grant(_item(f"http://127.0.0.1:{port}/oauth/token"))
        assert grant is not None
        with pytest.raises(TokenError, match="HTTP 307"):
            await fetch_token(session, grant, {"client_id": "a", "client_secret": "b"})
        assert hits == ["/oauth/token"]
    finally:
        await runner.cleanup()


async def test_guarded_connections_refuse_internal_addresses(fake: FakeTokenEndpoint) -> None:
    """An API-registered token endpoint is reached only at addresses the SSRF rules accept:
    a name resolving to loopback, and a loopback literal, never receive the request."""
    for url in (f"http://localhost:{fake.port}/oauth/token", fake.token_url):
        grant = token_grant(_item(url))
        assert grant is not None
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(Allowlist.parse("")))
        async with aiohttp.ClientSession(connector=connector) as guarded:
            with pytest.raises(TokenError):
                await fetch_token(guarded, grant, _values(fake), allowlist=Allowlist.parse(""))
    assert fake.requests_served == 0
    # The allow-list opens it, as for upstreams.
    allow = Allowlist.parse("127.0.0.0/8")
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow))
    async with aiohttp.ClientSession(connector=connector) as guarded:
        grant = token_grant(_item(f"http://localhost:{fake.port}/oauth/token"))
        assert grant is not None
        await fetch_token(guarded, grant, _values(fake), allowlist=allow)
    assert fake.requests_served == 1
    await asyncio.sleep(0)
