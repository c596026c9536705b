"""Redis Pub/Sub engine of the event bus: one channel per event type.

Pub/Sub keeps nothing for an absent subscriber (https://redis.io/docs/latest/develop/
interact/pubsub/#delivery-semantics), so this engine never owns durability: a failed
``publish`` raises :class:`PublishError` and the outbox relay keeps the event. The listener
reconnects forever with capped exponential backoff and jitter; an outage is logged, never
raised into the service.

After an outage, publishing resumes only once this process's own subscriptions are live
again (SUBSCRIBE confirmed), so its consumers see the backlog the relay then sends instead
of losing it in the gap between the two reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from control_plane.events.bus import Handler, Message, PublishError, Subscription, encode
from control_plane.events.bus import is_pattern as _is_pattern
from control_plane.settings import redact_url

if TYPE_CHECKING:  # redis is imported when a bus is built for a REDIS_URL (issue 20)
    import redis.asyncio as aioredis

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

# Jitter from a private generator: the global `random` state stays untouched.
_JITTER = random.Random()  # noqa: S311 - jitter, not crypto


def _errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


class RedisBus:
    def __init__(
        self,
        url: str,
        *,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        connect_timeout_s: float = 1.0,
        command_timeout_s: float = 3.0,
    ) -> None:
        self.url = url
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self._errors = _errors()  # what a lost Redis raises (imports redis: it is used)
        self.on_connected: list[Callable[[], None]] = []
        self.stats = {"published": 0, "publish_failures": 0, "received": 0, "reconnects": 0}
        self._subs: list[Subscription] = []
        self._publisher: aioredis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = False
        self._started = False

    # -- EventBus ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._started and (self._listening or not self._subs)

    def subscribe(self, types: Iterable[str], handler: Handler) -> None:
        self._subs.append(Subscription(tuple(types), handler))
        if self._started:  # re-subscribe with the new channel set
            self._restart_listener()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        self._publisher = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout_s,
            socket_timeout=self.command_timeout_s,
            # One quick retry rides over a pooled connection left dead by a Redis restart;
            # anything longer is the relay's business.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        )
        self._restart_listener()

    async def stop(self) -> None:
        self._started = False
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(*self._errors):
                await publisher.aclose()

    async def publish(self, envelope: Mapping[str, Any]) -> None:
        channel, body = encode(envelope)
        if self._publisher is None:
            raise PublishError("the Redis bus is not started")
        if self._subs and not self._listening:
            raise PublishError("Redis subscriptions are not live yet")
        try:
            await self._publisher.publish(channel, body)
        except self._errors as exc:
            self.stats["publish_failures"] += 1
            raise PublishError(f"Redis publish failed: {type(exc).__name__}: {exc}") from exc
        self.stats["published"] += 1

    # -- listener ------------------------------------------------------------------------
    def _restart_listener(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        self._listening = False
        if self._subs:
            self._listener = asyncio.create_task(self._listen(), name="redis-bus-listener")

    async def _listen(self) -> None:
        backoff = self.backoff_initial_s
        first = True
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except self._errors as exc:
                self._listening = False
                delay = backoff * _JITTER.uniform(0.5, 1.0)
                log.warning(
                    "Redis event subscription lost; reconnecting",
                    extra={
                        "redis": redact_url(self.url),
                        "error": f"{type(exc).__name__}: {exc}",
                        "retry_in_s": round(delay, 3),
                    },
                )
                if not first:
                    backoff = min(backoff * 2, self.backoff_max_s)
                first = False
                await asyncio.sleep(delay)
                self.stats["reconnects"] += 1
            else:  # pragma: no cover - _session only returns by raising
                return

    async def _session(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout_s,
            socket_timeout=None,  # a subscriber blocks on reads; liveness is the PING below
            health_check_interval=15,
        )
        pubsub = client.pubsub()
        try:
            exact = sorted({t for s in self._subs for t in s.types if not _is_pattern(t)})
            patterns = sorted({t for s in self._subs for t in s.types if _is_pattern(t)})
            if exact:
                await pubsub.subscribe(*exact)
            if patterns:
                await pubsub.psubscribe(*patterns)
            waiting = len(exact) + len(patterns)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                kind = message["type"]
                if kind in ("subscribe", "psubscribe"):
                    # Live only once Redis confirmed every channel: publishes from other
                    # connections that arrive after the confirmation reach us.
                    waiting -= 1
                    if waiting == 0:
                        self._connected()
                elif kind in ("message", "pmessage"):
                    await self._dispatch(message)
        finally:
            self._listening = False
            with contextlib.suppress(*self._errors):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(*self._errors):
                await client.aclose()

    def _connected(self) -> None:
        self._listening = True
        log.info("Redis event subscriptions live", extra={"redis": redact_url(self.url)})
        for callback in list(self.on_connected):
            try:
                callback()
            except Exception:
                log.exception("on_connected callback failed")

    async def _dispatch(self, raw: Mapping[str, Any]) -> None:
        self.stats["received"] += 1
        channel = _text(raw["channel"])
        # A channel matching an exact subscription *and* a pattern arrives twice (message
        # and pmessage); each copy goes only to the subscriptions that asked for it.
        key = channel if raw["type"] == "message" else _text(raw["pattern"])
        data = raw["data"]
        message = Message(channel, data if isinstance(data, bytes) else str(data).encode())
        for sub in list(self._subs):
            if key not in sub.types:
                continue
            try:
                await sub.handler(message)
            except Exception:
                log.exception("event handler failed", extra={"channel": channel})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
