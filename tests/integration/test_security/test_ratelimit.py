"""Per-principal token buckets on the management API: 429 problem+json with Retry-After."""

from __future__ import annotations

from control_plane.security.ratelimit import RateLimiter
from tests.integration.test_security.conftest import ADMIN, MakeSecure


async def test_each_principal_has_its_own_bucket(make_secure: MakeSecure) -> None:
    s = await make_secure(api_rate_limit=1, api_rate_burst=3)
    await s.new_key("a", "viewer", "acme")  # spends one of the admin's tokens
    await s.new_key("b", "viewer", "acme")
    statuses = [(await s.client.get("/integrations", headers=s.as_("a"))).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = await s.client.get("/integrations", headers=s.as_("a"))
    assert limited.status == 429
    assert limited.content_type == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1
    assert "api_key:" in (await limited.json())["detail"]
    assert (await s.client.get("/integrations", headers=s.as_("b"))).status == 200
    assert (await s.client.get("/health/live")).status == 200, "probes are not limited"
    assert (await s.client.get("/api-keys", headers=ADMIN)).status == 200


def test_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
    assert limiter.take("p") is None
    assert limiter.take("p") is None
    wait = limiter.take("p")
    assert wait is not None and abs(wait - 0.5) < 1e-9
    assert RateLimiter.retry_after_header(wait) == "1"
    now[0] = 0.5
    assert limiter.take("p") is None
    assert limiter.take("q") is None, "another principal is unaffected"
    assert RateLimiter(0, 1).take("p") is None, "rate 0 turns limiting off"


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(1.0, 1, max_principals=3)
    for n in range(10):
        limiter.take(f"p{n}")
    assert len(limiter._buckets) == 3
