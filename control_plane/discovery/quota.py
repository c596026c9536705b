"""What a ``scope: global`` quota has used in its current window, read from the Redis that
envoyproxy/ratelimit counts in.

envoyproxy/ratelimit keeps one counter per descriptor and window, named
``<prefix><domain>_<key>_<value>_..._<window start>`` (its ``CacheKeyGenerator``; the
window start is the Unix time rounded down to the unit), so the control plane can read
the fleet's exact usage without asking the service. Read only; never written here.
"""

from __future__ import annotations

import time
from typing import Any

from control_plane.model import Integration, RateBucket
from control_plane.registry.rate_rules import GLOBAL_UNITS
from control_plane.xds.translate.global_limit import DOMAIN, INTEGRATION_KEY, TENANT_KEY

__all__ = ["GlobalUsage"]


class GlobalUsage:
    def __init__(self, redis_url: str, *, key_prefix: str = "", timeout_s: float = 0.5) -> None:
        import redis.asyncio as aioredis  # constructed only with a Redis URL (issue 20)

        self._client = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = key_prefix

    def _key(self, entries: list[tuple[str, str]], bucket: RateBucket, now: float) -> str:
        divider = int(bucket.per)
        window = int(now) // divider * divider
        parts = "".join(f"{key}_{value}_" for key, value in entries)
        return f"{self._prefix}{DOMAIN}_{parts}{window}"

    def _window(self, bucket: RateBucket, now: float) -> dict[str, Any]:
        divider = int(bucket.per)
        start = int(now) // divider * divider
        return {"unit": GLOBAL_UNITS.get(bucket.per), "start": start, "end": start + divider}

    async def usage(self, item: Integration) -> dict[str, Any]:
        """Used and remaining requests of the integration's quota and of each tenant's, in
        the current window; ``error`` when the counters' Redis cannot answer."""
        rl = item.policies.rate_limit
        assert rl is not None and rl.scope == "global"
        now = time.time()
        quotas: list[tuple[str | None, RateBucket]] = [(None, rl.bucket)]
        quotas.extend((tenant, bucket) for tenant, bucket in sorted(rl.per_tenant.items()))
        keys = []
        for tenant, bucket in quotas:
            entries = [(INTEGRATION_KEY, item.id)]
            if tenant is not None:
                entries.append((TENANT_KEY, tenant))
            keys.append(self._key(entries, bucket, now))
        from redis.exceptions import RedisError  # loaded by the constructor

        try:
            values = await self._client.mget(keys)
        except (RedisError, OSError) as exc:
            return {"source": "redis", "error": str(exc) or type(exc).__name__}

        def figures(bucket: RateBucket, raw: Any) -> dict[str, Any]:
            used = int(raw) if raw is not None else 0
            return {
                "limit": bucket.requests,
                "used": used,
                "remaining": max(0, bucket.requests - used),
                "window": self._window(bucket, now),
            }

        out: dict[str, Any] = {"source": "redis", **figures(rl.bucket, values[0])}
        out["per_tenant"] = {
            tenant: figures(bucket, raw)
            for (tenant, bucket), raw in zip(quotas[1:], values[1:], strict=True)
            if tenant is not None
        }
        return out

    async def close(self) -> None:
        await self._client.aclose()
