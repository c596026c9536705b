"""Vetted resolution: the control plane resolves upstream host names itself.

The SSRF guard checks what a name resolves to when it is registered, but a name Envoy
resolves (``STRICT_DNS``/``LOGICAL_DNS``) can be re-pointed later at a metadata or pod
address (DNS rebinding). Under ``resolution: vetted`` (the default for API registrations)
Envoy never resolves the name: :class:`VettedResolver` does, with dnspython's asyncio
resolver, honouring each answer's TTL within a floor and a ceiling; it checks **every**
address against the rules registration uses (:func:`refusal`), and serves only the accepted
ones to Envoy over EDS (``ConfigPipeline.set_resolved``; the cluster is ``EDS``, see
``xds/translate/endpoints.py``). TLS still verifies the name: SNI and the SAN check come
from the integration, not from the addresses.

When an answer holds a refused address, that address is dropped, a WARNING names the name,
the address and the rule, and ``integration.resolution_refused`` is published (once per
change of the refused set). An answer with no acceptable address, or no answer at all
(NXDOMAIN, SERVFAIL, time-out), keeps the last good set; a name that never had one has no
endpoints, so requests fail fast with 503 rather than falling back to DNS in Envoy.

Only DNS servers are asked (``/etc/resolv.conf``'s, or the ``dns_servers`` setting), never
``/etc/hosts``. A name the SSRF parser reads as an address (``127.1``, ``0x7f.0.0.1``) is
not looked up: its address is checked and served as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from control_plane.discovery.dns_lookup import DnsAnswer, DnsFailure, ip_key, refusal
from control_plane.model import Integration
from control_plane.security.ssrf import Allowlist, parse_ip_literal
from control_plane.xds.translate.endpoints import vetted_name
from control_plane.xds.translate.messages import is_ip

__all__ = [
    "NameState",
    "Refusal",
    "VettedResolver",
    "resolution_status",
]

log = logging.getLogger(__name__)

Lookup = Callable[[str], Awaitable["DnsAnswer"]]
# (name -> accepted addresses; () for none, pending_view): ConfigPipeline.set_resolved.
Publish = Callable[[Mapping[str, Sequence[str]], int | None], None]
OnRefused = Callable[["Refusal"], Awaitable[None]]


@dataclass(slots=True)
class NameState:
    """What is known of one name: the set served (the last good), the refusals of the
    last answer, and when it was and will next be refreshed."""

    name: str
    served: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    ttl: float | None = None
    last_refresh: float | None = None  # wall clock (time.time)
    next_refresh: float = 0.0  # the resolver's clock (monotonic); inf while apply resolves it
    failures: int = 0
    published: tuple[str, ...] = ()  # what the pipeline was last given


@dataclass(frozen=True, slots=True)
class Refusal:
    """One answer's refused addresses, for the log and the event."""

    name: str
    refused: tuple[tuple[str, str], ...]
    served: tuple[str, ...]
    kept_last_good: bool  # the answer had no acceptable address; the previous set stays
    integrations: tuple[tuple[str, str], ...]  # (id, tenant) of those using the name

    def data(self, ident: str) -> dict[str, Any]:
        """The ``integration.resolution_refused`` payload for integration ``ident``."""
        return {
            "id": ident,
            "name": self.name,
            "refused": [{"address": a, "rule": r} for a, r in self.refused],
            "addresses": list(self.served),
            "kept_last_good": self.kept_last_good,
        }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


class VettedResolver:
    """Resolves every vetted name of the registry, refreshes it at its TTL (clamped to
    ``[ttl_floor_s, ttl_ceiling_s]``), and hands the accepted addresses to ``publish``.

    ``apply`` is a registry listener (subscribed ahead of the pipeline): it resolves new
    names before the pipeline translates the view, within ``first_wait_s``, so a new
    registration's first snapshot already has its endpoints. ``run`` refreshes in the
    background; names due within ``batch_window_s`` of each other are refreshed together
    and their changes published in one apply. A failed lookup is retried after the floor,
    doubling up to the ceiling.
    """

    def __init__(
        self,
        lookup: Lookup,
        allowlist: Allowlist,
        publish: Publish,
        *,
        ttl_floor_s: float = 5.0,
        ttl_ceiling_s: float = 300.0,
        on_refused: OnRefused | None = None,
        concurrency: int = 64,
        first_wait_s: float = 3.0,
        batch_window_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < ttl_floor_s <= ttl_ceiling_s:
            raise ValueError("the TTL floor must be positive and not above the ceiling")
        self.lookup = lookup
        self.allowlist = allowlist
        self.publish = publish
        self.ttl_floor_s = ttl_floor_s
        self.ttl_ceiling_s = ttl_ceiling_s
        self.on_refused = on_refused
        self.concurrency = concurrency
        self.first_wait_s = first_wait_s
        self.batch_window_s = batch_window_s
        self.clock = clock
        self.wall = wall
        self.states: dict[str, NameState] = {}
        self._users: dict[str, tuple[tuple[str, str], ...]] = {}
        self._reports: list[Refusal] = []
        self._pass = asyncio.Lock()
        self._wake = asyncio.Event()

    # -- the registry side ------------------------------------------------------------
    async def apply(self, view: Any) -> None:
        """Registry listener: follow the vetted names of ``view``; resolve new ones now."""
        users: dict[str, list[tuple[str, str]]] = {}
        for item in view.enabled():
            name = vetted_name(item)
            if name is not None:
                users.setdefault(name, []).append((item.id, item.tenant))
        self._users = {name: tuple(ids) for name, ids in users.items()}
        removed = {name: () for name in self.states if name not in users}
        for name in removed:
            del self.states[name]
        new = [NameState(name, next_refresh=math.inf) for name in users if name not in self.states]
        for state in new:
            self.states[state.name] = state
        if new:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.first_wait_s):
                    await self.refresh(new)
            for state in new:
                if state.next_refresh == math.inf:  # not answered in time: the loop goes on
                    state.next_refresh = self.clock()
            self._wake.set()
        await self._flush(getattr(view, "generation", None), removed)

    # -- the refresh side -------------------------------------------------------------
    async def run(self) -> None:
        """Refresh names as they fall due, until cancelled."""
        while True:
            self._wake.clear()
            try:
                horizon = self.clock() + self.batch_window_s
                due = [s for s in self.states.values() if s.next_refresh <= horizon]
                if due:
                    await self.refresh(due)
                    await self._flush(None)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the refresher outlives any surprise; the names stay due
                log.exception("vetted resolution pass failed")
                await asyncio.sleep(1.0)
                continue
            upcoming = min((s.next_refresh for s in self.states.values()), default=math.inf)
            timeout = None if upcoming == math.inf else max(0.0, upcoming - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def refresh(self, states: Iterable[NameState]) -> None:
        """Resolve ``states`` now, at most ``concurrency`` lookups at a time (no publish)."""
        pending = iter(list(states))

        async def worker() -> None:
            for state in pending:  # one iterator shared by the workers
                await self._resolve(state)

        async with self._pass:
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def refresh_all(self) -> None:
        """Resolve every name now and publish what changed (tests, benchmarks)."""
        await self.refresh(self.states.values())
        await self._flush(None)

    async def _resolve(self, state: NameState) -> None:
        name = state.name
        try:
            literal = parse_ip_literal(name)
            if literal is not None:
                answer = DnsAnswer((str(literal),), self.ttl_ceiling_s)
            else:
                answer = await self.lookup(name)
        except DnsFailure as exc:
            self._failed(state, str(exc))
            return
        except Exception as exc:
            log.exception("vetted resolution failed", extra={"host": name})
            self._failed(state, f"{type(exc).__name__}: {exc}")
            return
        if self.states.get(name) is state:  # not dropped by apply while the lookup ran
            self._answered(state, answer)

    def _answered(self, state: NameState, answer: DnsAnswer) -> None:
        accepted: list[str] = []
        refused: set[tuple[str, str]] = set()
        for address in answer.addresses:
            rule = refusal(self.allowlist, state.name, address)
            if rule is None:
                accepted.append(address)
            else:
                refused.add((address, rule))
        if accepted:
            state.served = tuple(sorted(set(accepted), key=ip_key))
            state.error = None
        else:
            state.error = "no acceptable address in the answer; " + (
                "serving the last good set" if state.served else "no endpoints (503)"
            )
        state.failures = 0
        state.ttl = answer.ttl
        state.last_refresh = self.wall()
        delay = min(max(answer.ttl, self.ttl_floor_s), self.ttl_ceiling_s)
        state.next_refresh = self.clock() + delay
        ordered = tuple(sorted(refused))
        if ordered and ordered != state.refused:
            report = Refusal(
                state.name, ordered, state.served, not accepted, self._users.get(state.name, ())
            )
            listed = ", ".join(f"{address} (rule {rule})" for address, rule in ordered)
            log.warning(
                f"vetted resolution of {state.name} refused {listed}; "
                + ("kept the last good addresses" if not accepted else "serving the others"),
                extra={
                    "host": state.name,
                    "refused": [{"address": a, "rule": r} for a, r in ordered],
                    "addresses": list(state.served),
                    "integrations": [ident for ident, _ in report.integrations],
                },
            )
            self._reports.append(report)
        state.refused = ordered

    def _failed(self, state: NameState, error: str) -> None:
        state.failures += 1
        state.error = error
        state.last_refresh = self.wall()
        backoff = self.ttl_floor_s * 2 ** min(state.failures - 1, 20)
        state.next_refresh = self.clock() + min(backoff, self.ttl_ceiling_s)
        level = logging.WARNING if state.failures == 1 else logging.DEBUG
        log.log(
            level,
            f"vetted resolution of {state.name} failed; "
            + ("kept the last good addresses" if state.served else "no endpoints (503)"),
            extra={"host": state.name, "error": error, "failures": state.failures},
        )

    async def _flush(
        self, pending_view: int | None, removed: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        """Publish every served set the pipeline does not have yet, then the events."""
        changes: dict[str, Sequence[str]] = dict(removed or {})
        for state in self.states.values():
            if state.served != state.published:
                changes[state.name] = state.published = state.served
        if changes:
            try:
                self.publish(changes, pending_view)
            except Exception:  # the next change publishes again (published is per name)
                log.exception("publishing vetted addresses failed")
        reports, self._reports = self._reports, []
        for report in reports:
            if self.on_refused is None:
                continue
            try:
                await self.on_refused(report)
            except Exception:
                log.exception("resolution_refused event failed", extra={"host": report.name})

    # -- the status API ---------------------------------------------------------------
    @staticmethod
    def blank(name: str) -> dict[str, Any]:
        """The block of a name not resolved yet."""
        return {
            "mode": "vetted",
            "name": name,
            "addresses": [],
            "refused": [],
            "ttl": None,
            "last_refresh": None,
            "next_refresh": None,
            "error": "not resolved yet",
        }

    def describe(self, name: str) -> dict[str, Any]:
        state = self.states.get(name)
        if state is None:
            return self.blank(name)
        upcoming = None
        if state.next_refresh != math.inf:
            upcoming = self.wall() + max(0.0, state.next_refresh - self.clock())
        return {
            "mode": "vetted",
            "name": name,
            "addresses": list(state.served),
            "refused": [{"address": a, "rule": r} for a, r in state.refused],
            "ttl": state.ttl,
            "last_refresh": _iso(state.last_refresh),
            "next_refresh": _iso(upcoming),
            "error": state.error,
        }


def resolution_status(resolver: VettedResolver | None, item: Integration) -> dict[str, Any] | None:
    """The ``resolution`` block of ``GET /integrations/{id}/status``: the vetted state of
    the integration's name, ``mode: envoy`` for a name Envoy resolves, None for an
    address or ``discovery: consul``."""
    name = vetted_name(item)
    if name is not None:
        if resolver is None:
            return {
                **VettedResolver.blank(name),
                "error": "vetted resolution is not running",
            }
        return resolver.describe(name)
    up = item.upstream
    if up.discovery == "consul" or is_ip(up.host.strip("[]")):
        return None
    return {"mode": "envoy", "name": up.host}
