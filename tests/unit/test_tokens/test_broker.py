"""The broker's refresh loop on a fake clock: refresh ahead, back off, withdraw before
expiry, recover, refresh early once per token on a 401 storm, one request at a time."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from control_plane.model import CredentialRef, Integration, TlsSettings, Upstream
from control_plane.registry.token_mode import TokenGrant
from control_plane.registry.view import RegistryView
from control_plane.tokens.broker import REFRESH_FAILED, REFRESHED, TokenBroker
from control_plane.tokens.client import TokenError
from control_plane.tokens.schedule import Minted, RefreshPolicy
from tests.unit.test_tokens.clock import FakeClock

LIFETIME = 100.0


def _item(ident: str = "api", audience: str = "https://api.example.test/") -> Integration:
    return Integration(
        id=ident,
        kind="http",
        upstream=Upstream("api.example.test", 443, "https", TlsSettings()),
        listen_port=10001,
        credentials={
            "client_id": CredentialRef("env:CID"),
            "client_secret": CredentialRef("env:CSECRET"),
        },
        settings={
            "token": {"token_url": "https://auth.example.test/oauth/token", "audience": audience}
        },
    )


@dataclass
class Provider:
    """Stands in for the identity provider: answers, fails or hangs on the fake clock."""

    clock: FakeClock
    up: bool = True
    hang: asyncio.Event | None = None
    calls: list[float] = field(default_factory=list)
    serial: int = 0

    async def fetch(self, grant: TokenGrant, values: Mapping[str, str]) -> Minted:
        self.calls.append(self.clock.now())
        if self.hang is not None:
            await self.hang.wait()
        if not self.up:
            raise TokenError("token endpoint answered HTTP 503 (temporarily_unavailable)")
        self.serial += 1
        now = self.clock.now()
        return Minted(f"tok-{grant.integration_id}-{self.serial}", now, now + LIFETIME)


@dataclass
class Harness:
    clock: FakeClock
    provider: Provider
    broker: TokenBroker
    published: list[tuple[float, str, str | None]]
    events: list[tuple[str, Mapping[str, Any]]]

    def injected(self, ident: str = "api") -> str | None:
        last = [token for _, i, token in self.published if i == ident]
        return last[-1] if last else None


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = FakeClock()
    provider = Provider(clock)
    published: list[tuple[float, str, str | None]] = []
    events: list[tuple[str, Mapping[str, Any]]] = []

    async def on_event(kind: str, data: Mapping[str, Any], tenant: str, subject: str) -> None:
        events.append((kind, data))

    broker = TokenBroker(
        fetch=provider.fetch,
        values=lambda item: {"client_id": "cid", "client_secret": "secret"},
        publish=lambda ident, token: published.append((clock.now(), ident, token)),
        policy=RefreshPolicy(fraction=0.9, jitter=0.04, backoff_base=1.0, backoff_max=8.0),
        on_event=on_event,
        clock=clock,
        random_source=lambda: 0.5,
    )
    yield Harness(clock, provider, broker, published, events)
    await broker.close()


async def _start(h: Harness, *items: Integration) -> None:
    await h.broker.apply(RegistryView(items={i.id: i for i in items or (_item(),)}, generation=1))
    await h.clock.advance(0)


async def test_refreshes_ahead_of_expiry_at_the_jittered_fraction(harness: Harness) -> None:
    h = harness
    start = h.clock.now()
    await _start(h)
    assert h.provider.calls == [start]
    assert h.injected() == "tok-api-1"
    status = h.broker.status("api")
    assert status is not None and status["state"] == "valid" and status["injecting"]
    await h.clock.advance(87.9)
    assert len(h.provider.calls) == 1
    await h.clock.advance(0.2)  # 0.9 - 0.04 * 0.5 = 0.88 of the lifetime
    assert h.provider.calls[1] == pytest.approx(start + 88.0)
    assert h.injected() == "tok-api-2"
    await h.clock.advance(88.0 * 3)
    assert len(h.provider.calls) == 5  # one per refresh interval, nothing in between
    assert [e for e, _ in h.events] == [REFRESHED] * 5
    assert all(None not in (t,) for _, _, t in h.published)


async def test_an_outage_keeps_the_token_while_valid_then_withdraws_it(harness: Harness) -> None:
    h = harness
    start = h.clock.now()
    await _start(h)
    h.provider.up = False
    await h.clock.advance(94.9)
    status = h.broker.status("api")
    assert status is not None and status["state"] == "failing" and status["injecting"]
    assert h.injected() == "tok-api-1"
    retries = [t - start for t in h.provider.calls[1:]]
    # First retry at 88 s, then jittered backoff (0.75 of 1, 2, 4, 8, 8 ... s).
    assert retries[0] == pytest.approx(88.0)
    gaps = [b - a for a, b in itertools.pairwise(retries)]
    assert gaps == pytest.approx([0.75, 1.5, 3.0])  # the next retry (at 99.25 s) is later
    await h.clock.advance(0.2)  # withdrawn min(30 s, 5 % of 100 s) before expiry: at 95 s
    withdrawn = [t - start for t, _, token in h.published if token is None]
    assert withdrawn == [pytest.approx(95.0)]
    status = h.broker.status("api")
    assert status is not None and status["state"] == "expired" and not status["injecting"]
    # Never a token published after its withdrawal time.
    for at, _, token in h.published:
        if token == "tok-api-1":
            assert at - start < 95.0
    failures = [d for e, d in h.events if e == REFRESH_FAILED]
    assert failures and "503" in failures[0]["error"] and failures[0]["injecting"]
    assert "tok-api" not in repr(h.events)
    # Recovery: injection resumes within one backoff step.
    h.provider.up = True
    before = h.clock.now()
    await h.clock.advance(8.0)
    assert h.injected() == "tok-api-2"
    recovered = next(t for t, _, token in h.published if token == "tok-api-2")
    assert recovered - before <= 8.0


async def test_a_401_storm_refreshes_early_once_per_token(harness: Harness) -> None:
    h = harness
    await _start(h)
    assert h.broker.nudge("api")
    assert not h.broker.nudge("api")  # the same token: asked already
    await h.clock.advance(0)
    assert len(h.provider.calls) == 2 and h.injected() == "tok-api-2"
    assert h.events[-1][1]["early"] is True
    assert h.broker.nudge("api")  # a new token may be nudged once again
    await h.clock.advance(0)
    assert len(h.provider.calls) == 3
    assert not h.broker.nudge("unknown")


async def test_refreshes_are_single_flight(harness: Harness) -> None:
    h = harness
    h.provider.hang = asyncio.Event()
    await _start(h)
    for _ in range(5):
        h.broker.nudge("api")
    await h.clock.advance(3.0)
    status = h.broker.status("api")
    assert status is not None and status["state"] == "refreshing"
    assert len(h.provider.calls) == 1
    h.provider.hang.set()
    await h.clock.advance(0)
    assert len(h.provider.calls) == 1 and h.injected() == "tok-api-1"


async def test_each_token_goes_only_to_its_own_integration(harness: Harness) -> None:
    h = harness
    await _start(h, _item("alpha"), _item("beta"))
    await h.clock.advance(200)
    for _, ident, token in h.published:
        assert token is None or token.startswith(f"tok-{ident}-")


async def test_a_changed_grant_withdraws_the_old_token_and_mints_anew(harness: Harness) -> None:
    h = harness
    await _start(h)
    changed = _item(audience="https://other.example.test/")
    await h.broker.apply(RegistryView(items={"api": changed}, generation=2))
    await h.clock.advance(0)
    tokens = [token for _, _, token in h.published]
    assert tokens == ["tok-api-1", None, "tok-api-2"]
    await h.broker.apply(RegistryView(items={}, generation=3))
    assert h.published[-1][2] is None and h.broker.status("api") is None


async def test_an_unusable_credential_is_a_failure_naming_the_reference(harness: Harness) -> None:
    h = harness

    def refuse(item: Integration) -> Mapping[str, str]:
        raise TokenError("credentials.client_secret (env:CSECRET) is unusable: not-granted")

    h.broker.values = refuse
    await _start(h)
    status = h.broker.status("api")
    assert status is not None and status["state"] == "expired"
    assert "env:CSECRET" in str(status["last_error"]) and h.provider.calls == []
