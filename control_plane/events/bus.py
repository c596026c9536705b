"""The event bus seam: a Protocol with an in-process engine (embedded default) and Redis.

Messages travel as the JSON text of a CloudEvents 1.0 envelope (structured content mode,
https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md) on a
channel named after the event ``type``. Both engines hand subscribers the same
:class:`Message` (channel + raw bytes), so a consumer parses and validates exactly what a
remote producer sent; the in-process engine serialises too, which also means a handler
never shares a mutable dict with the publisher.

Delivery is at-most-once per connected subscriber (that is what Redis Pub/Sub gives);
durability comes from the store's outbox and :mod:`control_plane.events.relay`, and
consumers de-duplicate by envelope ``id``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "EventBus",
    "Handler",
    "InProcessBus",
    "Message",
    "PublishError",
    "Subscription",
    "encode",
]

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The bus could not take the event now; the caller keeps it and retries later."""


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery: the channel it came on and the body exactly as published."""

    channel: str
    body: bytes

    def json(self) -> Any:
        """The decoded body; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.body)


Handler = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription:
    """Channels (exact names or ``fnmatch``/Redis glob patterns) and their handler."""

    types: tuple[str, ...]
    handler: Handler

    def matches(self, channel: str) -> bool:
        return any(
            fnmatch.fnmatchcase(channel, t) if is_pattern(t) else channel == t for t in self.types
        )


def is_pattern(channel: str) -> bool:
    return any(c in channel for c in "*?[")


def encode(envelope: Mapping[str, Any]) -> tuple[str, bytes]:
    """``(channel, body)`` for an envelope: the channel is its ``type``."""
    channel = envelope.get("type")
    if not isinstance(channel, str) or not channel:
        raise ValueError("an event envelope needs a non-empty string 'type'")
    return channel, json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


@runtime_checkable
class EventBus(Protocol):
    async def start(self) -> None:
        """Begin delivering to subscribers (subscribe before or after, both work)."""

    async def stop(self) -> None: ...

    async def publish(self, envelope: Mapping[str, Any]) -> None:
        """Hand one envelope to the bus; :class:`PublishError` when it cannot now."""

    def subscribe(self, types: Iterable[str], handler: Handler) -> None:
        """Call ``handler`` for every message on the channels or patterns in ``types``."""

    @property
    def connected(self) -> bool:
        """True while publishing can succeed and every subscription is live."""


async def deliver(subscriptions: Iterable[Subscription], message: Message) -> None:
    """Run the matching handlers; a failing handler is logged and never stops the others."""
    for sub in subscriptions:
        if not sub.matches(message.channel):
            continue
        try:
            await sub.handler(message)
        except Exception:
            log.exception("event handler failed", extra={"channel": message.channel})


class InProcessBus:
    """The embedded default: a queue and one dispatcher task in this process.

    ``publish`` only enqueues, so a publisher is never blocked by slow handlers and the
    order of publication is the order of delivery.
    """

    def __init__(self, max_queue: int = 10_000) -> None:
        self._subs: list[Subscription] = []
        self._queue: asyncio.Queue[Message] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, types: Iterable[str], handler: Handler) -> None:
        self._subs.append(Subscription(tuple(types), handler))

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._dispatch(), name="in-process-bus")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def publish(self, envelope: Mapping[str, Any]) -> None:
        channel, body = encode(envelope)
        try:
            self._queue.put_nowait(Message(channel, body))
        except asyncio.QueueFull:
            raise PublishError("in-process event queue is full") from None

    async def _dispatch(self) -> None:
        while True:
            message = await self._queue.get()
            await deliver(list(self._subs), message)
