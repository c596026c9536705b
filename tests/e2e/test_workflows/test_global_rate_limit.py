"""``scope: global`` quotas with real Envoys, a real envoyproxy/ratelimit and a real Redis.

The control plane renders envoyproxy/ratelimit's config into the service's runtime
directory and points each Envoy's ``ratelimit`` filter at it (docs/rate-limits.md#global).
Windows are the service's fixed per-second windows (Unix time // 1); upstream hits are
bucketed by the time they reach the upstream, so a request decided in the last
milliseconds of a window may land in the next one: the upper bound allows that one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.quota_load import hits_upstream, next_window, paced, stacks, status_of
from tests.support.ratelimit_service import RateLimitService
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.redis]

# One request may straddle a window edge between the service's decision and the upstream.
EDGE_SLACK = 1


@pytest.fixture
def ratelimit(redis_url: str, tmp_path: Path) -> Iterator[RateLimitService]:
    service = RateLimitService(redis_url, tmp_path)
    service.start()
    yield service
    service.stop()


async def test_one_quota_through_three_envoys(ratelimit: RateLimitService, tmp_path: Path) -> None:
    quota = 20
    async with (
        hits_upstream() as upstream,
        stacks(
            tmp_path,
            ratelimit,
            upstream,
            {"shared": f"{{requests: {quota}, per: 1s, scope: global}}"},
            count=3,
        ) as replicas,
    ):
        targets = [(s.sidecar("shared", "/"), None) for s in replicas]
        first = await next_window()
        statuses = await paced(replicas[0].session, targets, 2 * quota, 3.9)
        counts = upstream.per_window()
        windows = [counts.get(first + k, 0) for k in range(3)]
        assert all(0.95 * quota <= n <= quota + EDGE_SLACK for n in windows), windows
        assert set(statuses) <= {200, 429}, Counter(statuses)
        for replica in replicas:  # every Envoy asked the service, and some were refused
            stats = await replica.stats()
            assert stats.get("cluster.shared.ratelimit.ok", 0) > 0
            assert stats.get("cluster.shared.ratelimit.over_limit", 0) > 0


async def test_each_listed_tenant_is_held_to_its_own_quota(
    ratelimit: RateLimitService, tmp_path: Path
) -> None:
    rule = (
        "{requests: 100, per: 1s, scope: global, tenant_header: x-tenant-id, "
        "per_tenant: {acme: {requests: 5, per: 1s}, globex: {requests: 10, per: 1s}}}"
    )
    async with (
        hits_upstream() as upstream,
        stacks(tmp_path, ratelimit, upstream, {"tenanted": rule}, count=1) as (stack,),
    ):
        url = stack.sidecar("tenanted", "/")
        # 2x each tenant's quota; unlisted and absent tenants share the integration's bucket.
        targets = [(url, "acme")] * 2 + [(url, "globex")] * 4 + [(url, "initech"), (url, None)]
        first = await next_window()
        statuses = await paced(stack.session, targets, 40, 3.9)
        for tenant, quota in (("acme", 5), ("globex", 10)):
            counts = upstream.per_window(tenant)
            windows = [counts.get(first + k, 0) for k in range(3)]
            assert all(0.95 * quota <= n <= quota + EDGE_SLACK for n in windows), (tenant, windows)
        # 5 a second each, far below the integration's 100: never refused.
        unlisted = [
            s for i, s in enumerate(statuses) if targets[i % len(targets)][1] in (None, "initech")
        ]
        assert set(unlisted) == {200}, Counter(unlisted)


async def test_the_api_reads_the_fleets_usage_of_a_global_quota(
    ratelimit: RateLimitService, tmp_path: Path
) -> None:
    """GET /integrations/{id}/rate-limit reads what envoyproxy/ratelimit counted in Redis:
    the exact usage across the fleet in the current window, per tenant too."""
    rule = "{requests: 50, per: 1m, scope: global, per_tenant: {acme: {requests: 3, per: 1m}}}"
    async with (
        hits_upstream() as upstream,
        stacks(tmp_path, ratelimit, upstream, {"minutely": rule}, count=2) as replicas,
    ):
        if time.time() % 60 > 50:  # keep the requests and the read in one minute
            await asyncio.sleep(61 - time.time() % 60)
        for n in range(5):
            tenant = "acme" if n % 2 == 0 else None  # 3 of acme, 2 without a tenant
            status = await status_of(
                replicas[0].session, replicas[n % 2].sidecar("minutely", "/"), tenant
            )
            assert status == 200
        body = await replicas[1].get_json(replicas[1].api("/integrations/minutely/rate-limit"))
        usage = body["global"]
        assert body["scope"] == "global" and body["share"] == {"members": 1, "fraction": 1.0}
        assert (usage["limit"], usage["used"], usage["remaining"]) == (50, 5, 45), usage
        assert usage["window"]["unit"] == "minute"
        acme = usage["per_tenant"]["acme"]
        assert (acme["limit"], acme["used"], acme["remaining"]) == (3, 3, 0), acme


async def _burst(stack: Stack, ident: str, n: int = 8) -> Counter[int]:
    url = stack.sidecar(ident, "/")
    return Counter(await asyncio.gather(*(status_of(stack.session, url, None) for _ in range(n))))


async def test_outage_fail_open_and_closed_then_recovery(
    ratelimit: RateLimitService, tmp_path: Path
) -> None:
    rules = {
        "open-one": "{requests: 3, per: 1s, scope: global}",
        "closed-one": "{requests: 3, per: 1s, scope: global, failure_mode: closed}",
    }
    async with (
        hits_upstream() as upstream,
        stacks(tmp_path, ratelimit, upstream, rules, count=1) as (stack,),
    ):
        await next_window()
        for ident in rules:  # counting: a burst past the quota is refused
            assert (await _burst(stack, ident))[429] >= 1
        ratelimit.stop()
        open_statuses, closed_statuses = (
            await _burst(stack, "open-one"),
            await _burst(stack, "closed-one"),
        )
        assert open_statuses == Counter({200: 8}), open_statuses  # serves, past the quota
        assert closed_statuses == Counter({503: 8}), closed_statuses
        stats = await stack.stats()
        assert stats["cluster.open-one.ratelimit.failure_mode_allowed"] >= 8
        assert stats["cluster.closed-one.ratelimit.error"] >= 8
        # The API says so too: this Envoy's unanswered checks, and the failure mode.
        body = await stack.get_json(stack.api("/integrations/open-one/rate-limit"))
        assert body["global"]["failure_mode"] == "open"
        assert body["global"]["service"]["failure_mode_allowed"] >= 8
        await wait_until(
            lambda: "integration.rate_limit_unavailable" in stack.service.log(),
            deadline_s=10,
            message="the outage event (from Envoy's real counters)",
        )
        ratelimit.start()  # same ports: Envoy reconnects, no restart of anything else

        seen: list[object] = []

        async def counting_again() -> bool:
            await next_window()
            bursts = {ident: await _burst(stack, ident) for ident in rules}
            seen.append(bursts)
            return all(b[429] >= 1 for b in bursts.values())

        try:
            await wait_until(counting_again, deadline_s=20, interval_s=0.2)
        except TimeoutError:
            raise AssertionError((seen[-3:], ratelimit.log()[-3000:])) from None
        assert (await _burst(stack, "closed-one"))[503] == 0
