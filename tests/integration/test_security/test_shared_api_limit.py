"""The management API's per-principal limit, shared by the replicas through real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.security.ratelimit import RateLimiter, SharedRateLimiter
from tests.support.ports import free_port

pytestmark = [pytest.mark.redis]


async def test_two_replicas_take_from_one_bucket(redis_url: str) -> None:
    # Burst 5, refilled at 0.1/s: within this test, five requests in all pass.
    a = SharedRateLimiter(redis_url, RateLimiter(0.1, 5))
    b = SharedRateLimiter(redis_url, RateLimiter(0.1, 5))
    principal = f"key:shared-{free_port()}"
    try:
        outcomes = [await (a if n % 2 else b).acquire(principal) for n in range(8)]
        assert outcomes[:5] == [None] * 5
        waits = [w for w in outcomes[5:] if w is not None]
        assert len(waits) == 3 and all(0 < w <= 10.0 for w in waits)
        # Another principal has its own bucket.
        assert await a.acquire(principal + "-other") is None
        assert not a.degraded and not b.degraded
    finally:
        await a.close()
        await b.close()


async def test_without_redis_each_replica_limits_on_its_own(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = SharedRateLimiter(dead, RateLimiter(0.1, 2), timeout_s=0.2)
    try:
        outcomes = [await limiter.acquire("key:x") for _ in range(3)]
        assert outcomes[:2] == [None, None] and outcomes[2] is not None
        assert limiter.degraded
    finally:
        await limiter.close()
