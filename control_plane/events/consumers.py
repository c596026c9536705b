"""Consumers of other services' events, and the replica sync (on ``integration.*`` events
and on the store's change notifications).

* ``agent.executed`` — usage per integration and tenant (:class:`UsageBook`, shown in the
  status API and metrics);
* ``workflow.started`` — probe the integrations it names and publish the results;
* ``context.updated`` — forget cached probe/status data of the integrations it names.

A consumer validates the CloudEvents envelope; malformed and unknown events are counted
and logged, never raised. Delivery is at-least-once (outbox relay, replicas relaying the
same rows), so events are de-duplicated on ``source`` + ``id`` — the pair CloudEvents
requires producers to keep unique — in a bounded LRU.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from control_plane.cloudevents import envelope_problems
from control_plane.events.bus import EventBus, Message
from control_plane.events.watchers import probe_correlation
from control_plane.probing.book import ProbeBook
from control_plane.store.errors import StoreUnavailableError
from control_plane.store.notify import StoreChange

__all__ = [
    "CONSUMED_TYPES",
    "EventConsumer",
    "ProbeRunner",
    "RegistrySync",
    "SeenIds",
    "UsageBook",
    "named_integrations",
]

log = logging.getLogger(__name__)

CONSUMED_TYPES = ("agent.executed", "workflow.started", "context.updated")
# Probe one integration by id, recording and publishing its result as every probe does.
ProbeRunner = Callable[[str], Awaitable[object]]
Envelope = Mapping[str, Any]


class SeenIds:
    """A bounded set of recently processed event keys (least recently seen drop out)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def add(self, key: tuple[str, str]) -> bool:
        """True when ``key`` is new (and now remembered)."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._keys)


class UsageBook:
    """Executions and calls per integration and tenant, from ``agent.executed``."""

    def __init__(self) -> None:
        self._usage: dict[str, dict[str, dict[str, int]]] = {}

    def record(self, integration_id: str, tenant: str, calls: int = 1) -> None:
        row = self._usage.setdefault(integration_id, {}).setdefault(
            tenant, {"executions": 0, "calls": 0}
        )
        row["executions"] += 1
        row["calls"] += calls

    def for_integration(self, integration_id: str) -> dict[str, dict[str, int]]:
        return {t: dict(v) for t, v in sorted(self._usage.get(integration_id, {}).items())}

    def samples(self) -> list[tuple[str, str, int, int]]:
        """``(integration, tenant, executions, calls)`` rows, for metrics."""
        return [
            (ident, tenant, row["executions"], row["calls"])
            for ident, tenants in sorted(self._usage.items())
            for tenant, row in sorted(tenants.items())
        ]

    def forget(self, integration_id: str) -> None:
        self._usage.pop(integration_id, None)


def named_integrations(data: Any) -> list[tuple[str, int]]:
    """``(id, calls)`` pairs an event's data names.

    Accepted shapes: ``{"integrations": ["stripe", {"id": "auth0", "calls": 3}]}``,
    ``{"integration": "stripe"}`` and ``{"integration_id": "stripe"}``.
    """
    if not isinstance(data, Mapping):
        return []
    out: list[tuple[str, int]] = []
    for key in ("integration", "integration_id"):
        if isinstance(data.get(key), str) and data[key]:
            out.append((data[key], 1))
    raw = data.get("integrations")
    for entry in raw if isinstance(raw, list) else []:
        if isinstance(entry, str) and entry:
            out.append((entry, 1))
        elif isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
            calls = entry.get("calls", 1)
            ok = isinstance(calls, int) and not isinstance(calls, bool) and calls >= 0
            out.append((entry["id"], calls if ok else 1))
    return out


class EventConsumer:
    def __init__(
        self,
        *,
        usage: UsageBook,
        probes: ProbeBook,
        known: Callable[[], Iterable[str]],
        run_probe: ProbeRunner | None = None,
        seen_capacity: int = 10_000,
    ) -> None:
        self.usage = usage
        self.probes = probes
        self.known = known
        self.run_probe = run_probe
        self.on_context_updated: list[Callable[[str], None]] = []
        self.stats = {
            k: 0 for k in ("received", "processed", "malformed", "unknown", "duplicates", "failed")
        }
        self._seen = SeenIds(seen_capacity)
        self._handlers: dict[str, Callable[[Envelope], Awaitable[None]]] = {
            "agent.executed": self._agent_executed,
            "workflow.started": self._workflow_started,
            "context.updated": self._context_updated,
        }
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(CONSUMED_TYPES, self.handle)

    async def handle(self, message: Message) -> None:
        """Bus handler: never raises, whatever arrives."""
        self.stats["received"] += 1
        try:
            envelope = message.json()
        except ValueError:
            self._count("malformed", message, "body is not JSON")
            return
        problems = envelope_problems(envelope)
        if problems:
            self._count("malformed", message, "; ".join(problems))
            return
        handler = self._handlers.get(envelope["type"])
        if handler is None:
            self._count("unknown", message, f"no consumer for type {envelope['type']!r}")
            return
        if not self._seen.add((envelope["source"], envelope["id"])):
            self.stats["duplicates"] += 1
            log.debug("duplicate event ignored", extra={"event_id": envelope["id"]})
            return
        try:
            await handler(envelope)
        except Exception:
            self.stats["failed"] += 1
            log.exception("event consumer failed", extra={"event_id": envelope["id"]})
            return
        self.stats["processed"] += 1

    def _count(self, what: str, message: Message, why: str) -> None:
        self.stats[what] += 1
        log.warning(
            f"{what} event ignored",
            extra={"channel": message.channel, "reason": why, "bytes": len(message.body)},
        )

    async def _agent_executed(self, envelope: Envelope) -> None:
        data = envelope.get("data")
        tenant = envelope.get("tenant")
        if tenant is None and isinstance(data, Mapping) and isinstance(data.get("tenant"), str):
            tenant = data["tenant"]
        for ident, calls in named_integrations(data):
            self.usage.record(ident, tenant or "default", calls)

    async def _workflow_started(self, envelope: Envelope) -> None:
        known = set(self.known())
        idents = sorted({i for i, _ in named_integrations(envelope.get("data")) if i in known})
        if not idents:
            return
        if self.run_probe is None:
            log.info("no prober available; workflow integrations not probed", extra={"ids": idents})
            return
        # Probes take seconds; run them beside the bus listener, not inside it.
        correlation = envelope.get("correlationid") or envelope["id"]
        task = asyncio.create_task(self._probe_all(idents, correlation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe_all(self, idents: list[str], correlation_id: str) -> None:
        assert self.run_probe is not None
        probe_correlation.set(correlation_id)  # this task's own context
        results = await asyncio.gather(*(self.run_probe(i) for i in idents), return_exceptions=True)
        for ident, result in zip(idents, results, strict=True):
            if isinstance(result, BaseException):
                log.error("probe failed to run", extra={"id": ident, "error": repr(result)})

    async def _context_updated(self, envelope: Envelope) -> None:
        for ident, _ in named_integrations(envelope.get("data")):
            self.probes.forget(ident)
            for callback in list(self.on_context_updated):
                callback(ident)

    async def drain(self) -> None:
        """Wait for probe runs started by ``workflow.started`` (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


REGISTRY_TYPES = ("integration.registered", "integration.updated", "integration.deregistered")


class RegistrySync:
    """Replicas: another control plane changed the shared store; re-read it.

    Events and PostgreSQL notifications only say *that* something changed; the store stays
    the truth, so a burst of them coalesces into one refresh per ``debounce_s`` window and
    lost or duplicated ones do no harm. Both drop messages while disconnected, so a refresh
    also runs after every reconnect and, as a safety net, every ``interval_s``.
    """

    def __init__(
        self,
        refresh: Callable[[], Awaitable[None]],
        interval_s: float = 30.0,
        *,
        debounce_s: float = 0.05,
    ) -> None:
        self.refresh = refresh
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self.refreshes = 0
        self._wanted = asyncio.Event()
        self._peer_changes: list[StoreChange] = []
        self._task: asyncio.Task[None] | None = None

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(REGISTRY_TYPES, self.handle)

    async def handle(self, message: Message) -> None:
        self.request()

    def request(self) -> None:
        self._wanted.set()

    def peer_changed(self, change: StoreChange) -> None:
        """Another replica committed ``change`` (a PostgreSQL notification)."""
        self._peer_changes.append(change)
        self.request()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="registry-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wanted.wait(), self.interval_s)
            except TimeoutError:
                log.debug("periodic re-read of the registry store")
            else:
                await asyncio.sleep(self.debounce_s)  # let the rest of a burst arrive
            self._wanted.clear()
            changes, self._peer_changes = self._peer_changes, []
            if changes:
                log.info(
                    "another replica changed the registry; re-reading the store",
                    extra={
                        "changes": len(changes),
                        "ids": sorted({c.id for c in changes})[:20],
                        "ops": sorted({c.op for c in changes}),
                    },
                )
            try:
                await self.refresh()
                self.refreshes += 1
            except StoreUnavailableError as exc:  # the next trigger or period tries again
                log.warning("cannot re-read the registry store", extra={"error": str(exc)})
            except Exception:
                log.exception("re-reading the registry store failed")
