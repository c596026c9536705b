"""Token buckets per principal: ``burst`` at once, then ``rate`` a second; one bucket each.

The clock is injected: the tests move time by hand and never sleep.
"""

from __future__ import annotations

import pytest

from control_plane.security.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _passed(limiter: RateLimiter, principal: str, calls: int) -> int:
    return sum(limiter.take(principal) is None for _ in range(calls))


def test_a_new_principal_gets_the_whole_burst_then_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(4.0, 5, clock=clock)
    assert _passed(limiter, "p", 5) == 5
    assert limiter.take("p") == pytest.approx(0.25), "one token comes after 1/rate seconds"


def test_refused_calls_spend_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.take("p") is None
    waits = [limiter.take("p") for _ in range(5)]
    assert waits == [pytest.approx(1.0)] * 5, "hammering does not push the wait further"
    clock.now += 1.0
    assert limiter.take("p") is None


def test_tokens_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 4, clock=clock)
    assert _passed(limiter, "p", 4) == 4
    clock.now += 0.25  # half a token
    assert limiter.take("p") == pytest.approx(0.25), "the rest of the token"
    clock.now += 0.25
    assert limiter.take("p") is None
    clock.now += 1.0  # two tokens
    assert _passed(limiter, "p", 3) == 2


def test_an_idle_bucket_fills_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 3, clock=clock)
    assert _passed(limiter, "p", 3) == 3
    clock.now += 3600.0
    assert _passed(limiter, "p", 10) == 3


def test_each_principal_has_its_own_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, clock=clock)
    assert _passed(limiter, "api_key:a", 5) == 2
    assert limiter.take("api_key:a") is not None
    assert _passed(limiter, "api_key:b", 2) == 2, "a's calls did not spend b's tokens"
    assert _passed(limiter, "jwt:a", 2) == 2, "ids are compared whole"
    clock.now += 1.0
    assert _passed(limiter, "api_key:a", 5) == 1
    assert _passed(limiter, "api_key:b", 5) == 1


def test_a_burst_below_one_still_lets_one_call_through() -> None:
    clock = Clock()
    for burst in (0, -5):
        limiter = RateLimiter(1.0, burst, clock=clock)
        assert limiter.burst == 1
        assert _passed(limiter, f"p{burst}", 3) == 1


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_rate_of_zero_or_less_turns_limiting_off(rate: float) -> None:
    limiter = RateLimiter(rate, 1, clock=Clock())
    assert not limiter.enabled
    assert _passed(limiter, "p", 1000) == 1000


def test_a_slow_rate_gives_a_long_wait() -> None:
    limiter = RateLimiter(1 / 60, 1, clock=Clock())  # one a minute
    assert limiter.take("p") is None
    wait = limiter.take("p")
    assert wait is not None and wait == pytest.approx(60.0)
    assert RateLimiter.retry_after_header(wait) == "60"


@pytest.mark.parametrize(
    ("wait", "header"), [(0.0, "1"), (0.001, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")]
)
def test_retry_after_is_whole_seconds_and_never_zero(wait: float, header: str) -> None:
    assert RateLimiter.retry_after_header(wait) == header


def test_the_idlest_principal_is_forgotten_first() -> None:
    clock = Clock()
    limiter = RateLimiter(0.001, 1, clock=clock, max_principals=2)
    assert limiter.take("a") is None
    assert limiter.take("b") is None
    assert limiter.take("a") is not None  # a is now the most recently used
    assert limiter.take("c") is None  # b, the idlest, is forgotten
    assert limiter.take("a") is not None, "a was kept: still empty"
    assert limiter.take("b") is None, "b starts again with a full bucket"
