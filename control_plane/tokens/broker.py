"""The token broker: one refresh loop per integration in token mode.

Each loop (:class:`_Minter`) is the only code that obtains its integration's tokens, so
refreshes are single-flight by construction. It

* obtains a token at start, and again at ``RefreshPolicy.refresh_at`` (a fraction of the
  lifetime, jittered per replica), or at once when nudged (a 401 storm from the upstream);
* with Redis (:class:`SharedTokens`), first adopts a fresh token another replica stored,
  and otherwise refreshes under the fleet-wide lock and stores what it got;
* hands each token to ``publish(integration_id, token)`` -- the pipeline's ``set_token``,
  which puts it in that integration's own SDS secret, nothing else;
* on failure keeps the current token while it is valid, retries with jittered exponential
  backoff, and at ``withdraw_at`` (just before expiry) publishes ``None``: the secret is
  emptied and requests go out without a token rather than with an expired one.

The token is registered with the log scrubber the moment it is obtained and never leaves
this package except through ``publish``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from control_plane.model import Integration
from control_plane.observability.logging import forget_secret, register_secret
from control_plane.registry.token_mode import TokenGrant, token_grant
from control_plane.registry.view import RegistryView
from control_plane.tokens.client import TokenError
from control_plane.tokens.schedule import Minted, RefreshPolicy
from control_plane.tokens.shared import SharedTokens
from control_plane.tokens.status import TokenStatus

__all__ = ["REFRESHED", "REFRESH_FAILED", "Clock", "TokenBroker", "WallClock"]

log = logging.getLogger(__name__)

# Jitter from a private generator: the global `random` state stays untouched.
_JITTER = random.Random()  # noqa: S311 - jitter, not crypto

REFRESHED = "integration.token_refreshed"
REFRESH_FAILED = "integration.token_refresh_failed"

Fetch = Callable[[TokenGrant, Mapping[str, str]], Awaitable[Minted]]
Values = Callable[[Integration], Mapping[str, str]]
Publish = Callable[[str, str | None], object]
OnEvent = Callable[[str, Mapping[str, Any], str, str], Awaitable[None]]
# How often a replica waiting for another's refresh looks for the stored token.
_POLL_S = 0.1


class Clock(Protocol):
    def now(self) -> float: ...

    async def wait(self, delay: float, wake: asyncio.Event) -> None:
        """Return after ``delay`` seconds, or earlier when ``wake`` is set."""


class WallClock:
    def now(self) -> float:
        return time.time()

    async def wait(self, delay: float, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(0.0, delay))


class _Busy(Exception):
    """Another replica holds the refresh lock and has not stored a token yet."""


class _Minter:
    def __init__(self, broker: TokenBroker, item: Integration, grant: TokenGrant) -> None:
        self.broker, self.item, self.grant = broker, item, grant
        self.status = TokenStatus(token_url=grant.token_url)
        self.current: Minted | None = None
        self.wake = asyncio.Event()
        self.early = False
        self._nudged: str | None = None  # the token an early refresh was already asked for
        self._recent: deque[str] = deque(maxlen=3)  # tokens the scrubber still knows
        self._r = broker.random()

    def nudge(self) -> bool:
        """Ask for one early refresh of the current token; False if already asked."""
        token = self.current.token if self.current else None
        if token is None or token == self._nudged:
            return False
        self._nudged, self.early = token, True
        self.wake.set()
        return True

    async def run(self) -> None:
        policy, clock = self.broker.policy, self.broker.clock
        next_refresh = clock.now()
        while True:
            now = clock.now()
            if self.status.injecting and self.current and now >= policy.withdraw_at(self.current):
                self._withdraw()
            if now >= next_refresh or self.early:
                next_refresh = await self._attempt()
            wake_at = next_refresh
            if self.status.injecting and self.current is not None:
                wake_at = min(wake_at, policy.withdraw_at(self.current))
            self.status.next_refresh = next_refresh
            await clock.wait(wake_at - clock.now(), self.wake)
            self.wake.clear()

    async def _attempt(self) -> float:
        """One refresh; returns when the next one is due."""
        policy, clock = self.broker.policy, self.broker.clock
        forced, self.early = self.early, False
        previous = self.status.state
        self.status.state = "refreshing"
        try:
            minted = await self._obtain(forced)
        except _Busy:
            self.status.state = previous
            return clock.now() + _POLL_S
        except TokenError as exc:
            return await self._failed(str(exc))
        except Exception as exc:  # a bug must not end the loop (and so the withdrawals)
            log.exception("token refresh raised", extra={"integration": self.item.id})
            return await self._failed(f"unexpected error: {type(exc).__name__}")
        self._install(minted)
        self._r = self.broker.random()
        if minted.source == "idp":
            self.broker.tally[(self.item.id, "success")] += 1
            await self.broker.event(
                REFRESHED,
                self.item,
                {"expires_at": minted.expires_at, "issued_at": minted.issued_at, "early": forced},
            )
        else:
            self.broker.tally[(self.item.id, "shared")] += 1
        return policy.refresh_at(minted, self._r)

    async def _failed(self, error: str) -> float:
        now = self.broker.clock.now()
        status = self.status
        status.consecutive_failures += 1
        status.last_error, status.last_error_at = error, now
        status.state = "failing" if status.injecting else "expired"
        self.broker.tally[(self.item.id, "failure")] += 1
        log.warning(
            "token refresh failed",
            extra={"integration": self.item.id, "error": error, "injecting": status.injecting},
        )
        valid_until = self.current.expires_at if status.injecting and self.current else None
        await self.broker.event(
            REFRESH_FAILED,
            self.item,
            {
                "error": error,
                "consecutive_failures": status.consecutive_failures,
                "injecting": status.injecting,
                "valid_until": valid_until,
            },
        )
        backoff = self.broker.policy.backoff(status.consecutive_failures, self.broker.random())
        return now + backoff

    def _fresh(self, record: Minted | None, forced: bool) -> bool:
        """Whether a shared token may be adopted instead of asking the provider."""
        if record is None:
            return False
        now = self.broker.clock.now()
        if forced and self.current is not None and record.token == self.current.token:
            return False  # the token the upstream keeps refusing
        if self.current is not None and record.issued_at < self.current.issued_at:
            return False
        return now < self.broker.policy.refresh_at(record, self._r)

    async def _obtain(self, forced: bool) -> Minted:
        values = self.broker.values(self.item)
        shared = self.broker.shared
        if shared is None or self.broker.shared_down_until > self.broker.clock.now():
            return await self.broker.fetch(self.grant, values)
        try:
            record = await shared.get(self.grant)
            if self._fresh(record, forced):
                assert record is not None
                return record
            async with shared.lock(self.item.id) as held:
                if held:
                    record = await shared.get(self.grant)
                    if self._fresh(record, forced):
                        assert record is not None
                        return record
                    minted = await self.broker.fetch(self.grant, values)
                    try:
                        await shared.put(self.grant, minted, self.broker.clock.now())
                    except Exception as exc:  # the token is good; only sharing it failed
                        self.broker.redis_failed(exc)
                    return minted
            return await self._await_other(shared, forced)
        except TokenError:
            raise
        except (_Busy, asyncio.CancelledError):
            raise
        except Exception as exc:  # Redis unreachable or failing: fetch alone for a while
            self.broker.redis_failed(exc)
            return await self.broker.fetch(self.grant, values)

    async def _await_other(self, shared: SharedTokens, forced: bool) -> Minted:
        clock, never = self.broker.clock, asyncio.Event()
        deadline = clock.now() + shared.lock_ttl_s
        while clock.now() < deadline:
            await clock.wait(_POLL_S, never)
            record = await shared.get(self.grant)
            if self._fresh(record, forced):
                assert record is not None
                return record
        raise _Busy

    def _install(self, minted: Minted) -> None:
        register_secret(minted.token)
        if minted.token not in self._recent:
            if len(self._recent) == self._recent.maxlen:
                forget_secret(self._recent[0])
            self._recent.append(minted.token)
        self.current = minted
        status = self.status
        status.state, status.injecting = "valid", True
        status.expires_at, status.issued_at = minted.expires_at, minted.issued_at
        status.last_refresh, status.source = self.broker.clock.now(), minted.source
        status.consecutive_failures = 0
        # Only ever this integration's own secret (token/<id>).
        self.broker.publish(self.item.id, minted.token)

    def _withdraw(self) -> None:
        self.status.injecting = False
        self.status.state = "expired"
        self.broker.publish(self.item.id, None)
        log.warning(
            "token expired without a successor; requests go out without one",
            extra={"integration": self.item.id},
        )

    def stop(self) -> None:
        if self.status.injecting:
            self.broker.publish(self.item.id, None)
        self.status.injecting = False


class TokenBroker:
    def __init__(
        self,
        *,
        fetch: Fetch,
        values: Values,
        publish: Publish,
        policy: RefreshPolicy | None = None,
        shared: SharedTokens | None = None,
        on_event: OnEvent | None = None,
        clock: Clock | None = None,
        random_source: Callable[[], float] = _JITTER.random,
        redis_retry_s: float = 5.0,
    ) -> None:
        self.fetch, self.values, self.publish = fetch, values, publish
        self.policy = policy or RefreshPolicy()
        self.shared = shared
        self.on_event = on_event
        self.clock: Clock = clock or WallClock()
        self.random = random_source
        self.redis_retry_s = redis_retry_s
        self.shared_down_until = 0.0
        # (integration id, result) -> count: success | failure | shared (adopted).
        self.tally: Counter[tuple[str, str]] = Counter()
        self._minters: dict[str, _Minter] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def apply(self, view: RegistryView) -> None:
        """Registry listener: a loop per enabled integration in token mode; a changed grant
        restarts its loop (the old token is withdrawn first)."""
        wanted: dict[str, tuple[Integration, TokenGrant]] = {}
        for item in view.enabled():
            grant = token_grant(item)
            if grant is not None:
                wanted[item.id] = (item, grant)
        for ident in list(self._minters):
            current = wanted.get(ident)
            if current is None or current[1] != self._minters[ident].grant:
                await self._stop(ident)
            else:
                self._minters[ident].item = current[0]
        for ident, (item, grant) in wanted.items():
            if ident not in self._minters:
                minter = _Minter(self, item, grant)
                self._minters[ident] = minter
                self._tasks[ident] = asyncio.create_task(minter.run(), name=f"token-{ident}")

    async def _stop(self, ident: str) -> None:
        task = self._tasks.pop(ident)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._minters.pop(ident).stop()

    async def close(self) -> None:
        for ident in list(self._minters):
            await self._stop(ident)

    def nudge(self, integration_id: str) -> bool:
        """One early refresh (the upstream keeps refusing the current token)."""
        minter = self._minters.get(integration_id)
        return minter.nudge() if minter is not None else False

    def status(self, integration_id: str) -> dict[str, Any] | None:
        minter = self._minters.get(integration_id)
        return None if minter is None else minter.status.as_dict()

    def statuses(self) -> dict[str, TokenStatus]:
        return {ident: m.status for ident, m in sorted(self._minters.items())}

    def redis_failed(self, exc: Exception) -> None:
        if self.shared_down_until <= self.clock.now():
            log.warning(
                "shared token store unavailable; fetching tokens without the fleet",
                extra={"error": type(exc).__name__},
            )
        self.shared_down_until = self.clock.now() + self.redis_retry_s

    async def event(self, event_type: str, item: Integration, data: Mapping[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            await self.on_event(event_type, {"integration": item.id, **data}, item.tenant, item.id)
        except Exception as exc:  # an event bus problem must not stop the refresh loop
            log.warning("token event not published", extra={"error": type(exc).__name__})
