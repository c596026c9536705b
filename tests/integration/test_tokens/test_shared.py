"""Replicas sharing tokens through a real Redis: one token request per lifetime for the
fleet, tokens encrypted at rest and bound to their integration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from control_plane.model import CredentialRef, Integration, TlsSettings, Upstream
from control_plane.registry.token_mode import token_grant
from control_plane.registry.view import RegistryView
from control_plane.tokens.broker import TokenBroker
from control_plane.tokens.cipher import TokenCipher
from control_plane.tokens.client import fetch_token
from control_plane.tokens.schedule import Minted, RefreshPolicy
from control_plane.tokens.shared import PREFIX, SharedTokens
from tests.support.fake_token_endpoint import FakeTokenEndpoint, running_token_endpoint
from tests.support.waiting import wait_until

pytestmark = pytest.mark.redis

KEY = "shared-token-test-key-0123456789abcdef"
LIFETIME = 2.0


def _item(token_url: str, ident: str = "billing") -> Integration:
    return Integration(
        id=ident,
        kind="http",
        upstream=Upstream("127.0.0.1", 443, "https", TlsSettings()),
        listen_port=10001,
        credentials={
            "client_id": CredentialRef("env:CID"),
            "client_secret": CredentialRef("env:CSECRET"),
        },
        settings={"token": {"token_url": token_url}},
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTokenEndpoint]:
    async with running_token_endpoint(expires_in=LIFETIME) as endpoint:
        yield endpoint


async def _flush(redis_url: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    await client.flushdb()
    await client.aclose()


async def test_three_replicas_make_one_request_per_lifetime(
    fake: FakeTokenEndpoint, redis_url: str
) -> None:
    await _flush(redis_url)
    item = _item(fake.token_url)
    injected: dict[int, str | None] = {}
    values = {"client_id": fake.client_id, "client_secret": fake.client_secret}
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def fetch(grant: object, vals: object) -> Minted:
            assert grant is not None
            return await fetch_token(session, grant, values)  # type: ignore[arg-type]

        brokers = []
        for replica in range(3):
            shared = SharedTokens(redis_asyncio.from_url(redis_url), TokenCipher(KEY))
            stack.push_async_callback(shared.close)

            def publish(ident: str, token: str | None, replica: int = replica) -> None:
                injected[replica] = token

            broker = TokenBroker(
                fetch=fetch,
                values=lambda _: values,
                publish=publish,
                shared=shared,
                policy=RefreshPolicy(),
            )
            stack.push_async_callback(broker.close)
            brokers.append(broker)
        for broker in brokers:
            await broker.apply(RegistryView(items={item.id: item}, generation=1))
        started = time.time()
        samples = 0
        while time.time() - started < 4 * LIFETIME:
            await asyncio.sleep(0.05)
            if all(injected.get(r) for r in range(3)):
                samples += 1
                for replica in range(3):
                    token = injected[replica]
                    assert fake.verdict(f"Bearer {token}", time.time()) == "ok", replica
        statuses = [b.status(item.id) for b in brokers]
    lifetimes = (time.time() - started) / LIFETIME
    assert samples > 0
    # One request per lifetime for the whole fleet (plus at most one), not one per replica.
    assert fake.requests_served <= int(lifetimes) + 1, fake.requests_served
    sources = {s["source"] for s in statuses if s is not None}
    assert "shared" in sources


async def test_shared_tokens_are_encrypted_and_bound_to_their_integration(
    redis_url: str,
) -> None:
    await _flush(redis_url)
    client = redis_asyncio.from_url(redis_url)
    shared = SharedTokens(client, TokenCipher(KEY))
    alpha = token_grant(_item("https://auth.example.test/t", "alpha"))
    beta = token_grant(_item("https://auth.example.test/t", "beta"))
    assert alpha is not None and beta is not None
    now = time.time()
    await shared.put(alpha, Minted("alpha-token-value", now, now + 60), now)
    raw = await client.get(PREFIX + "alpha")
    assert raw is not None and b"alpha-token-value" not in raw
    assert 0 < await client.pttl(PREFIX + "alpha") <= 60_000  # gone when the token expires
    got = await shared.get(alpha)
    assert got is not None and got.token == "alpha-token-value" and got.source == "shared"
    # Copied under beta's key, it does not open as beta's token.
    await client.set(PREFIX + "beta", raw)
    assert await shared.get(beta) is None
    # Another key (another deployment) cannot open it either.
    assert await SharedTokens(client, TokenCipher("o" * 40)).get(alpha) is None
    async with shared.lock("alpha") as first, shared.lock("alpha") as second:
        assert first and not second
    async with shared.lock("alpha") as again:
        assert again  # released by its owner
    await shared.close()


async def test_an_unreachable_redis_means_fetching_alone(fake: FakeTokenEndpoint) -> None:
    from tests.support.ports import free_port

    item = _item(fake.token_url)
    values = {"client_id": fake.client_id, "client_secret": fake.client_secret}
    published: list[str | None] = []
    dead = redis_asyncio.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    async with aiohttp.ClientSession() as session:

        async def fetch(grant: object, vals: object) -> Minted:
            return await fetch_token(session, grant, values)  # type: ignore[arg-type]

        broker = TokenBroker(
            fetch=fetch,
            values=lambda _: values,
            publish=lambda ident, token: published.append(token),
            shared=SharedTokens(dead, TokenCipher(KEY)),
        )
        await broker.apply(RegistryView(items={item.id: item}, generation=1))
        await wait_until(lambda: bool(published), message="a token without Redis")
        await broker.close()
    assert published and published[0] in fake.issued
    assert fake.requests_served == 1
