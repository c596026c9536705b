"""Fleet-wide once-per-window events: replicas claim a window in Redis before publishing.

Every pod's Envoy counts its own rate-limited requests, so without coordination a fleet of
N pods publishes N ``integration.rate_limit_exceeded`` events per window. With Redis, each
replica adds its count to the window's counter and publishes only if it is the first to
claim the window (``SET NX``): one event per window and integration for the fleet, carrying
the fleet's count at that moment (``fleet_rate_limited``; counts other pods add later in
the same window are not in it). If Redis cannot answer, the replica publishes on its own
(an event too many rather than none).
"""

from __future__ import annotations

import logging

__all__ = ["WindowClaims"]

log = logging.getLogger(__name__)


class WindowClaims:
    def __init__(self, redis_url: str, fleet: str, *, timeout_s: float = 0.5) -> None:
        import redis.asyncio as aioredis  # constructed only with a Redis URL (issue 20)

        self._client = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._fleet = fleet

    async def claim(
        self, event_type: str, subject: str, window: int, count: int, ttl_s: float
    ) -> tuple[bool, int]:
        """(publish?, the fleet's count in this window so far, this replica's included)."""
        key = f"integration-service:events:{self._fleet}:{event_type}:{subject}:{window}"
        ttl = max(1, int(ttl_s * 2))
        from redis.exceptions import RedisError  # loaded by the constructor

        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.incrby(f"{key}:count", count)
            pipe.expire(f"{key}:count", ttl)
            pipe.set(f"{key}:claim", "1", nx=True, ex=ttl)
            total, _, first = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning(
                "event window claim failed; publishing from this replica",
                extra={"event_type": event_type, "error": str(exc) or type(exc).__name__},
            )
            return True, count
        return bool(first), int(total)

    async def close(self) -> None:
        await self._client.aclose()
