"""Per-principal token buckets for the management API (429 with ``Retry-After``).

With Redis configured (:class:`SharedRateLimiter`) every replica takes from the same
bucket, kept in Redis and updated by one atomic script, so a principal gets the configured
rate from the whole fleet, not N times it. Without Redis (:class:`RateLimiter`) the
buckets are in memory per replica: with N replicas behind a load balancer a principal may
get up to N times the rate. If Redis cannot answer, the shared limiter falls back to the
replica's own buckets (logged) until it can: the API stays limited, never unlimited.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter", "SharedRateLimiter"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``rate`` tokens per second, at most ``burst``; ``rate`` 0 turns limiting off."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_principals: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._max = max_principals
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def acquire(self, principal: str) -> float | None:
        """:meth:`take`, awaitable like :meth:`SharedRateLimiter.acquire`."""
        return self.take(principal)

    def take(self, principal: str) -> float | None:
        """None when the request may pass, else the seconds until a token is available."""
        if not self.enabled:
            return None
        now = self._clock()
        bucket = self._buckets.pop(principal, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        self._buckets[principal] = bucket  # most recently used last
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)  # forget the idlest principal (a full bucket)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """``Retry-After`` is whole seconds; never 0 (a client would retry at once)."""
        return str(max(1, math.ceil(wait_s)))


# KEYS[1]: the principal's bucket; ARGV: rate per second, burst. Redis's own clock, so the
# replicas' clocks do not matter. Returns the wait in seconds as text ("-1": pass).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(v[1]) or burst
local stamp = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = -1
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class SharedRateLimiter:
    """The same buckets for every replica, in Redis (``integration-service:api-rate:*``)."""

    def __init__(self, redis_url: str, fallback: RateLimiter, *, timeout_s: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self._fallback = fallback
        self.rate, self.burst = fallback.rate, fallback.burst
        self._client = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self._client.register_script(_TAKE)
        self.degraded = False

    @property
    def enabled(self) -> bool:
        return self._fallback.enabled

    async def acquire(self, principal: str) -> float | None:
        if not self.enabled:
            return None
        import redis.exceptions

        try:
            raw = await self._script(
                keys=[f"integration-service:api-rate:{principal}"], args=[self.rate, self.burst]
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            if not self.degraded:
                log.warning(
                    "API rate limit: Redis unavailable, limiting per replica until it is back",
                    extra={"error": str(exc) or type(exc).__name__},
                )
            self.degraded = True
            return self._fallback.take(principal)
        if self.degraded:
            log.info("API rate limit: shared through Redis again")
            self.degraded = False
        wait = float(raw.decode() if isinstance(raw, bytes) else raw)
        return None if wait < 0 else wait

    async def close(self) -> None:
        await self._client.aclose()
