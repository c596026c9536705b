"""Run probes: once on demand (``POST /integrations/{id}/test``) and periodically per
enabled integration, with Envoy-style healthy/unhealthy thresholds.

Every result is bounded by ``timeout_s``, scrubbed of credential values, recorded in the
:class:`ProbeBook` with the threshold state, and handed to ``prober.callbacks`` (the
``integration.health_check`` event and the metrics subscribe there). A failure at the
``connect`` step is refined with Envoy's own counters for the cluster: the client of a
``tcp_proxy`` (or of a bodiless HEAD) only sees a closed connection or a 503, while Envoy
counts why (``cluster.<id>.ssl.fail_verify_san`` and friends).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from adapters.probes import Probe, ProbeContext, probe_for
from adapters.probes.result import HealthState, ProbeResult
from control_plane.model import CredentialRef, Integration
from control_plane.observability.logging import scrub
from control_plane.probing.book import ProbeBook
from control_plane.registry.credential_policy import CredentialPolicy
from control_plane.registry.credentials import resolve_credentials
from control_plane.registry.view import RegistryView
from control_plane.settings import Settings
from control_plane.sidecar.admin import EnvoyAdmin, EnvoyAdminError

__all__ = [
    "HealthCallback",
    "HealthCheck",
    "ProbeSchedule",
    "Prober",
    "running_prober",
]

log = logging.getLogger(__name__)

Trigger = Literal["scheduled", "manual"]
# How often the background loop compares its tasks with the registry.
RECONCILE_S = 1.0
# Envoy counters that say why an upstream connection failed (cluster.<id>.<name>).
_TLS_COUNTERS = {
    "ssl.fail_verify_san": "the upstream certificate does not name the host (SAN mismatch)",
    "ssl.fail_verify_error": "the upstream certificate did not verify against the CA",
    "ssl.fail_verify_no_cert": "the upstream presented no certificate",
    "ssl.connection_error": "the TLS handshake with the upstream failed",
}
_CONNECT_COUNTERS = ("upstream_cx_connect_fail", "upstream_cx_connect_timeout")
# Those counters of every cluster, in one request for only them (and only those ever
# written; a missing one is 0). Each probe used to fetch the whole ``/stats``: with 1,000
# integrations probed every 30 s, 33 requests a second of 90 ms and more on Envoy's main
# thread, which also applies xDS updates (issue 20). The probes that start within
# ``_BASELINE_S`` of each other share one such read as their "before"; the "after" of a
# failed connect is read afresh.
_FAILURE_STATS = (
    r"^cluster\.[^.]+\.("
    + "|".join(re.escape(name) for name in (*_TLS_COUNTERS, *_CONNECT_COUNTERS))
    + r")$"
)
_BASELINE_S = 1.0


@dataclass(frozen=True, slots=True)
class ProbeSchedule:
    """Health-check knobs; Envoy's semantics: the state
    turns healthy after ``healthy_threshold`` passes in a row and unhealthy after
    ``unhealthy_threshold`` failures in a row."""

    enabled: bool = True
    interval_s: float = 30.0
    timeout_s: float = 10.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> ProbeSchedule:
        """The one parser of these knobs is ``load_settings`` (the settings file overlaid
        by ``INTEGRATION_SERVICE_PROBE_*``); this only copies its values."""
        return cls(
            enabled=settings.probe_enabled,
            interval_s=settings.probe_interval,
            timeout_s=settings.probe_timeout,
            healthy_threshold=settings.probe_healthy_threshold,
            unhealthy_threshold=settings.probe_unhealthy_threshold,
        )


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One probe outcome with the threshold state before and after it."""

    integration: Integration
    result: ProbeResult
    state: HealthState
    previous: HealthState
    trigger: Trigger

    @property
    def changed(self) -> bool:
        return self.state != self.previous


HealthCallback = Callable[[HealthCheck], Awaitable[None] | None]
AdminFactory = Callable[[], EnvoyAdmin]


@dataclass(slots=True)
class _Streak:
    passes: int = 0
    failures: int = 0


class Prober:
    def __init__(
        self,
        book: ProbeBook,
        *,
        environ: Mapping[str, str],
        schedule: ProbeSchedule | None = None,
        sidecar_host: str = "127.0.0.1",
        admin: AdminFactory | None = None,
        probes: Callable[[str], Probe] = probe_for,
        policy: Callable[[], CredentialPolicy] | None = None,
        token_state: Callable[[str], tuple[str, str | None] | None] | None = None,
    ) -> None:
        self.book = book
        # Token mode: the broker's (state, last error) of an integration's token.
        self.token_state = token_state
        # The credential policy in force (the registry's): a probe uses no value the
        # policy withholds from the integration, exactly like Envoy.
        self._policy = policy
        self.environ = environ
        self.schedule = schedule or ProbeSchedule()
        self.sidecar_host = sidecar_host
        self.callbacks: list[HealthCallback] = []
        self._admin = admin
        self._probes = probes
        self._streaks: dict[str, _Streak] = {}
        self._baseline: tuple[float, asyncio.Future[Mapping[str, float] | None]] | None = None

    # -- one probe -----------------------------------------------------------------------
    def _resolver(self, item: Integration) -> Callable[[CredentialRef], str | None]:
        policy = self._policy() if self._policy is not None else None
        resolved = resolve_credentials([item], self.environ, policy).values_for(item)
        return lambda ref: resolved.get(ref.ref)

    async def _envoy_counters(
        self, item: Integration, *, fresh: bool = False
    ) -> dict[str, float] | None:
        """The failure counters of ``item``'s cluster: read now (``fresh``), or from the
        read the probes starting about now share."""
        if self._admin is None:
            return None
        stats = await (self._read_failures() if fresh else self._shared_failures())
        if stats is None:
            return None
        prefix = f"cluster.{item.id}."
        names = (*_TLS_COUNTERS, *_CONNECT_COUNTERS)
        return {n: float(stats.get(prefix + n, 0)) for n in names}

    async def _read_failures(self) -> Mapping[str, float] | None:
        assert self._admin is not None
        try:
            async with self._admin() as admin:
                return await admin.stats(_FAILURE_STATS, used_only=True, kind="Counters")
        except (TimeoutError, EnvoyAdminError, OSError):
            return None

    async def _shared_failures(self) -> Mapping[str, float] | None:
        now = time.monotonic()
        if self._baseline is None or now - self._baseline[0] > _BASELINE_S:
            self._baseline = (now, asyncio.ensure_future(self._read_failures()))
        # Shielded: one waiter cancelled (its probe's task) leaves the read to the others.
        return await asyncio.shield(self._baseline[1])

    async def _explain(
        self, item: Integration, result: ProbeResult, before: dict[str, float] | None
    ) -> ProbeResult:
        """Name the TLS step when Envoy counted a failed upstream handshake meanwhile."""
        if result.ok or result.step != "connect" or before is None:
            return result
        after = await self._envoy_counters(item, fresh=True)
        if after is None:
            return result
        for name, meaning in _TLS_COUNTERS.items():
            if (delta := after[name] - before[name]) > 0:
                detail = f"{meaning} (Envoy cluster.{item.id}.{name} +{delta:g}); {result.detail}"
                return dataclasses.replace(result, step="tls", detail=detail)
        for name in _CONNECT_COUNTERS:
            if (delta := after[name] - before[name]) > 0:
                detail = f"{result.detail}; Envoy counted cluster.{item.id}.{name} +{delta:g}"
                return dataclasses.replace(result, detail=detail)
        return result

    async def probe(self, item: Integration) -> ProbeResult:
        """Run the probe of ``item`` once (no recording)."""
        timeout = self.schedule.timeout_s
        if not item.enabled:
            return ProbeResult(False, 0.0, "config", "disabled: the sidecar has no listener")
        if item.listen_port is None:
            return ProbeResult(False, 0.0, "config", "no listen_port assigned yet")
        try:
            probe = self._probes(item.kind)
        except KeyError:
            return ProbeResult(False, 0.0, "config", f"kind {item.kind!r} has no probe")
        ctx = ProbeContext(
            item,
            host=self.sidecar_host,
            timeout=timeout,
            resolve=self._resolver(item),
            token_state=self.token_state(item.id) if self.token_state else None,
        )
        before = await self._envoy_counters(item)
        try:
            async with asyncio.timeout(timeout):
                result = await probe(ctx)
        except TimeoutError:
            result = ctx.fail(f"no answer within {timeout:g}s")
        except Exception as exc:  # a probe bug or an unmapped library error: report, not raise
            log.debug("probe raised", exc_info=True, extra={"integration": item.id})
            result = ctx.fail(f"{type(exc).__name__}: {exc}")
        result = await self._explain(item, result, before)
        return dataclasses.replace(result, detail=scrub(result.detail))

    def _next_state(self, item: Integration, ok: bool) -> tuple[HealthState, HealthState]:
        previous = self.book.state_of(item.id)
        streak = self._streaks.setdefault(item.id, _Streak())
        if ok:
            streak.passes, streak.failures = streak.passes + 1, 0
            if streak.passes >= self.schedule.healthy_threshold:
                return previous, "healthy"
        else:
            streak.passes, streak.failures = 0, streak.failures + 1
            if streak.failures >= self.schedule.unhealthy_threshold:
                return previous, "unhealthy"
        return previous, previous

    async def check(self, item: Integration, trigger: Trigger = "manual") -> HealthCheck:
        """Probe, record with the threshold state, and notify the callbacks."""
        result = await self.probe(item)
        previous, state = self._next_state(item, result.ok)
        self.book.record(item.id, result, state)
        check = HealthCheck(item, result, state, previous, trigger)
        if check.changed:
            log.log(
                logging.INFO if state == "healthy" else logging.WARNING,
                "integration health changed",
                extra={"integration": item.id, "from": previous, "to": state, "step": result.step},
            )
        for callback in list(self.callbacks):
            try:
                outcome = callback(check)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("health-check callback failed", extra={"integration": item.id})
        return check

    # -- periodic ------------------------------------------------------------------------
    def _first_delay(self, item: Integration) -> float:
        """Spread the first probes over up to 2 s, the same offset for the same id."""
        return (zlib.crc32(item.id.encode()) % 1000) / 1000 * min(self.schedule.interval_s, 2.0)

    async def _every_interval(self, item: Integration) -> None:
        await asyncio.sleep(self._first_delay(item))
        while True:
            await self.check(item, "scheduled")
            await asyncio.sleep(self.schedule.interval_s)

    async def run(self, view: Callable[[], RegistryView]) -> None:
        """Keep one health-check task per enabled integration until cancelled."""
        tasks: dict[str, tuple[Integration, asyncio.Task[None]]] = {}
        try:
            while True:
                wanted = {i.id: i for i in view().enabled() if i.listen_port is not None}
                for ident, (item, task) in list(tasks.items()):
                    if wanted.get(ident) != item:  # removed, disabled or changed
                        task.cancel()
                        del tasks[ident]
                        self._streaks.pop(ident, None)
                        if ident not in wanted:
                            self.book.forget(ident)
                for ident, item in wanted.items():
                    if ident not in tasks:
                        task = asyncio.create_task(
                            self._every_interval(item), name=f"health-check-{ident}"
                        )
                        tasks[ident] = (item, task)
                await asyncio.sleep(RECONCILE_S)
        finally:
            for _, task in tasks.values():
                task.cancel()
            await asyncio.gather(*(t for _, t in tasks.values()), return_exceptions=True)


@contextlib.asynccontextmanager
async def running_prober(prober: Prober, view: Callable[[], RegistryView]) -> AsyncIterator[None]:
    """The periodic loop as a context (for ``cleanup_ctx``); nothing when disabled."""
    if not prober.schedule.enabled:
        yield
        return
    task = asyncio.create_task(prober.run(view), name="health-checks")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
