"""Per-principal token buckets for the management API (429 with ``Retry-After``).

In memory, per replica: with N replicas behind a load balancer a principal may get up to
N times the rate. That bounds abuse of one replica, which is the point (the store and the
Envoy admin API behind it are the scarce resources).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]


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
