"""Fleet membership for ``scope: fleet`` rate limits: how many Envoys share each bucket.

Envoy's ``local_cluster_rate_limit`` divides a bucket by the size of the bootstrap's local
cluster; the control plane serves that cluster's membership over EDS
(:func:`~control_plane.xds.translate.endpoints.fleet_assignment`). The sizes come from
heartbeats in Redis, written every ``interval_s`` and valid for ``ttl_s``:

* per pod (each replica runs one Envoy): every replica of the fleet ``fleet_name`` beats
  into the hash ``integration-service:fleet:<fleet>:pods`` (field: the replica, value: the
  expiry in ms); the fleet's size is the number of unexpired fields;
* shared topology: every replica beats, per workload, the number of that workload's nodes
  connected to it into ``integration-service:fleet:<fleet>:workload:<name>`` (value
  ``<expiry ms>:<count>``); a workload's size is the sum over unexpired fields.

A member that dies stops beating: it leaves the count once its last beat expires, within
``ttl_s`` plus one ``interval_s`` (8 s by default), and Envoy has the new share one push
later. Without Redis every replica sees only itself (per pod: 1; shared: its own nodes),
and ``status()`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # redis is imported when a REDIS_URL is first used (issue 20)
    import redis.asyncio as aioredis

__all__ = ["FleetMembership", "MembershipStatus"]

log = logging.getLogger(__name__)

PREFIX = "integration-service:fleet"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True)
class MembershipStatus:
    source: str  # "redis" | "none"
    connected: bool
    pods: int = 1
    workloads: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    updated_at: float | None = None


class FleetMembership:
    """Beats for this replica and reads the fleet's sizes; calls ``on_change(pods,
    workloads)`` after every read (the pipeline pushes only when a size changed)."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        fleet: str,
        member: str,
        local_nodes: Callable[[], Mapping[str, int]],
        on_change: Callable[[int, dict[str, int]], None],
        counters: Callable[[], Mapping[str, tuple[float, float]]] = dict,
        on_availability: Callable[[bool, str | None], None] = lambda up, error: None,
        interval_s: float = 2.0,
        ttl_s: float = 6.0,
    ) -> None:
        self._url = redis_url
        self._fleet, self._member = fleet, member
        self._local_nodes = local_nodes
        self._on_change = on_change
        self._counters = counters
        # Called when Redis stops or starts answering (not on every beat).
        self._on_availability = on_availability
        self._available: bool | None = None
        self.interval_s, self.ttl_s = interval_s, ttl_s
        self.status = MembershipStatus("redis" if redis_url else "none", connected=False)
        self._client: aioredis.Redis | None = None

    def _key(self, suffix: str) -> str:
        return f"{PREFIX}:{self._fleet}:{suffix}"

    async def beat(self) -> None:
        """One heartbeat and one read (also what the loop runs)."""
        local = {name: n for name, n in self._local_nodes().items() if n > 0}
        if self._url is None:
            self._publish(1, dict(local), None)
            return
        import redis.asyncio as aioredis  # loaded only with a Redis URL

        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self._url, socket_timeout=self.interval_s, socket_connect_timeout=self.interval_s
            )
        now_ms = int(time.time() * 1000)
        expiry = now_ms + int(self.ttl_s * 1000)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(self._key("pods"), self._member, str(expiry))
            for name, count in local.items():
                pipe.hset(self._key(f"workload:{name}"), self._member, f"{expiry}:{count}")
                pipe.sadd(self._key("workloads"), name)
            # This pod's Envoy counters of each fleet-scoped integration, for the fleet's
            # figures (GET /integrations/{id}/rate-limit sums them over live members).
            for ident, (allowed, limited) in self._counters().items():
                value = f"{expiry}:{int(allowed)}:{int(limited)}"
                pipe.hset(self._key(f"counters:{ident}"), self._member, value)
            pipe.smembers(self._key("workloads"))
            replies = await pipe.execute()
            names = sorted(_text(n) for n in replies[-1])
            pods = await self._live(self._key("pods"), now_ms)
            sizes = {}
            for name in names:
                sizes[name] = await self._live(self._key(f"workload:{name}"), now_ms)
        except (aioredis.RedisError, OSError) as exc:
            # Keep the last sizes: a Redis outage must not make every Envoy take the whole
            # bucket at once (the fleet would send N times the quota).
            if self.status.connected or self.status.error is None:
                log.warning(
                    "fleet membership unavailable; the last sizes stay",
                    extra={"error": str(exc)},
                )
            self.status.connected, self.status.error = False, str(exc) or type(exc).__name__
            self._availability(False, self.status.error)
            return
        self._publish(max(1, pods), {n: c for n, c in sizes.items() if c > 0}, None)
        self._availability(True, None)

    async def _live(self, key: str, now_ms: int) -> int:
        """The sum of the unexpired members of one hash; expired ones are removed."""
        assert self._client is not None
        total, expired = 0, []
        for member, raw in (await self._client.hgetall(key)).items():
            text = _text(raw)
            expiry, _, count = text.partition(":")
            if int(expiry) < now_ms:
                expired.append(member)
                continue
            total += int(count) if count else 1
        if expired:
            await self._client.hdel(key, *expired)
        return total

    async def fleet_counters(self, ident: str) -> dict[str, object] | None:
        """The fleet's Envoy counters of one integration: allowed and limited summed over
        the live members' last beats (cumulative since each Envoy started); None without
        Redis or while it cannot answer."""
        if self._url is None or self._client is None:
            return None
        from redis.exceptions import RedisError  # loaded: there is a client

        now_ms = int(time.time() * 1000)
        try:
            raw = await self._client.hgetall(self._key(f"counters:{ident}"))
        except (RedisError, OSError):
            return None
        members = allowed = limited = 0
        for value in raw.values():
            expiry, ok, refused = (int(x) for x in _text(value).split(":"))
            if expiry >= now_ms:
                members += 1
                allowed += ok
                limited += refused
        return {"members": members, "allowed": allowed, "limited": limited}

    def _availability(self, up: bool, error: str | None) -> None:
        if up != self._available:
            first = self._available is None
            self._available = up
            if not (first and up):  # a first successful beat is no news
                self._on_availability(up, error)

    def _publish(self, pods: int, workloads: dict[str, int], error: str | None) -> None:
        changed = (pods, workloads) != (self.status.pods, self.status.workloads)
        self.status.pods, self.status.workloads = pods, workloads
        self.status.connected = self._url is not None
        self.status.error = error
        self.status.updated_at = time.time()
        if changed:
            log.info("fleet size", extra={"pods": pods, "workloads": workloads})
        self._on_change(pods, workloads)

    async def run(self) -> None:
        """Beat every ``interval_s`` until cancelled; a failed beat is retried next time."""
        try:
            while True:
                try:
                    await self.beat()
                except Exception:  # a heartbeat must never die
                    log.exception("fleet heartbeat failed")
                await asyncio.sleep(self.interval_s)
        finally:
            await self.close()

    async def close(self) -> None:
        """Leave the fleet (bounded: a Redis that does not answer cannot hold a shutdown)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._leave(), max(1.0, 5 * self.interval_s))
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _leave(self) -> None:
        """On a clean stop: remove this replica's beats at once, not after ``ttl_s``."""
        if self._client is None:
            return
        with contextlib.suppress(Exception):
            names = [_text(n) for n in await self._client.smembers(self._key("workloads"))]
            pipe = self._client.pipeline(transaction=False)
            pipe.hdel(self._key("pods"), self._member)
            for name in names:
                pipe.hdel(self._key(f"workload:{name}"), self._member)
            await pipe.execute()
