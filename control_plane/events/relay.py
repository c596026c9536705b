"""The transactional outbox relay, and the publisher of events that are not mutations.

A registry mutation and its event are committed in one store transaction
(:mod:`control_plane.store.protocol`); this relay is the only path from the outbox to the
bus. It publishes pending events strictly in ``seq`` order and marks them sent; at the
first failure it stops, so a later event can never overtake an earlier one, and tries
again later. The result is at-least-once delivery (a crash between publish and
``mark_sent`` re-sends), which consumers absorb by de-duplicating on the envelope ``id``.
Replicas sharing one PostgreSQL may each relay the same row; the same rule covers that.

It wakes on every registry change, on :meth:`OutboxRelay.wake` (the publisher below),
when the bus reconnects, and on a timer as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from control_plane.cloudevents import make_event
from control_plane.events.bus import EventBus, PublishError
from control_plane.store.protocol import OutboxEvent, RegistryStore, StoreError

__all__ = ["EventPublisher", "OutboxRelay"]

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        store: RegistryStore,
        bus: EventBus,
        *,
        interval_s: float = 5.0,
        retry_s: float = 1.0,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.bus = bus
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.batch = batch
        self.stats: dict[str, int] = {"published": 0, "failures": 0, "dropped": 0}
        self.last_error: str | None = None
        # Called with the event type after each publish (metrics count them).
        self.on_published: list[Callable[[str], None]] = []
        self._wake = asyncio.Event()
        self._resume = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New events may be waiting: drain now (a no-op while backing off)."""
        self._wake.set()

    def resume(self) -> None:
        """The bus is back: retry at once instead of at the end of the back-off."""
        self._resume.set()
        self._wake.set()

    async def registry_changed(self, _view: object) -> None:
        """:meth:`RegistryService.subscribe` listener: a mutation wrote outbox rows."""
        self.wake()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        # Python 3.11's wait_for returns the inner result and drops a cancel that lands as
        # its inner wait completes (https://github.com/python/cpython/issues/86296), and
        # _run would then loop on: cancel until the task has really ended.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task is not None and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn about it

    def state(self) -> dict[str, Any]:
        return {**self.stats, "last_error": self.last_error, "running": self._task is not None}

    async def drain(self) -> int:
        """Publish every pending event in order; returns how many went out.

        Raises :class:`PublishError` or :class:`StoreError` after marking what did go out;
        the rest stays pending.
        """
        total = 0
        async with self._lock:
            while True:
                pending = await self.store.pending_events(self.batch)
                if not pending:
                    return total
                sent: list[int] = []
                try:
                    for event in pending:
                        await self._publish(event)
                        sent.append(event.seq)
                finally:
                    if sent:
                        await self.store.mark_sent(sent)
                        total += len(sent)
                if len(pending) < self.batch:
                    return total

    async def _publish(self, event: OutboxEvent) -> None:
        try:
            await self.bus.publish(event.envelope)
        except ValueError:
            # An envelope the bus cannot encode would block the outbox for ever: skip it.
            self.stats["dropped"] += 1
            log.error("dropping an unpublishable outbox event", extra={"event_id": event.id})
            return
        self.stats["published"] += 1
        for callback in list(self.on_published):
            try:
                callback(event.type)
            except Exception:
                log.exception("on_published callback failed")

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            failed = False
            try:
                count = await self.drain()
                if count:
                    log.debug("outbox drained", extra={"events": count})
                self.last_error = None
            except (PublishError, StoreError) as exc:
                failed = True
                self.stats["failures"] += 1
                if self.last_error is None:  # log the start of an outage, not every retry
                    log.warning("events wait in the outbox", extra={"error": str(exc)})
                self.last_error = str(exc)
            except Exception as exc:  # the relay must outlive any surprise
                failed = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("outbox relay pass failed")
            if failed:
                # Mutations keep waking us during an outage; wait for the bus or the retry
                # timer instead, so an outage is not a busy loop of failing publishes.
                self._resume.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._resume.wait(), self.retry_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)


class EventPublisher:
    """Events that are not registry mutations (health, rate limits, breakers, NACKs).

    They go through the outbox as well, so a Redis outage delays them and loses none. When
    the store itself is down they are published directly, best effort.
    """

    def __init__(self, store: RegistryStore, bus: EventBus, relay: OutboxRelay) -> None:
        self.store = store
        self.bus = bus
        self.relay = relay
        self._tasks: set[asyncio.Task[Any]] = set()

    async def emit(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        tenant: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        envelope = make_event(
            event_type, data, tenant=tenant, subject=subject, correlation_id=correlation_id
        )
        try:
            await self.store.append_events(
                [OutboxEvent(id=envelope["id"], type=event_type, envelope=envelope)]
            )
        except StoreError as exc:
            log.warning("outbox unavailable; publishing directly", extra={"error": str(exc)})
            try:
                await self.bus.publish(envelope)
            except PublishError:
                log.error("event lost: neither outbox nor bus", extra={"type": event_type})
            return envelope
        log.debug(
            "event recorded",
            extra={"event_type": event_type, "subject": subject, "event_id": envelope["id"]},
        )
        self.relay.wake()
        return envelope

    def emit_soon(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        tenant: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """From synchronous callbacks (xDS status listeners): emit in a task."""
        task = asyncio.get_running_loop().create_task(
            self.emit(
                event_type, data, tenant=tenant, subject=subject, correlation_id=correlation_id
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Let scheduled emits finish (they are quick store writes)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
