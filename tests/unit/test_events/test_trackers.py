"""Pure event logic: rate-limit debouncing, breaker transitions, envelopes, de-duplication."""

from __future__ import annotations

from control_plane.cloudevents import envelope_problems, make_event
from control_plane.events.consumers import SeenIds, named_integrations
from control_plane.events.watchers import BreakerTracker, RateLimitTracker

STAT = "pay.http_local_rate_limit.rate_limited"


def test_first_sample_is_a_baseline_then_deltas_are_debounced() -> None:
    tracker = RateLimitTracker(debounce_s=10)
    assert tracker.observe({STAT: 50}, ["pay"], now=0) == [], "history before we watched"
    (first,) = tracker.observe({STAT: 53}, ["pay"], now=2)
    assert first["rate_limited"] == 3 and first["total"] == 53
    assert first["window"]["seconds"] == 2
    assert tracker.observe({STAT: 60}, ["pay"], now=4) == [], "debounced"
    assert tracker.observe({STAT: 61}, ["pay"], now=8) == []
    (second,) = tracker.observe({STAT: 61}, ["pay"], now=12)
    assert second["rate_limited"] == 8, "everything since the previous event"
    assert second["window"]["seconds"] == 10, "from the sample before the first rejection"
    assert tracker.observe({STAT: 61}, ["pay"], now=30) == [], "quiet: nothing to say"


def test_envoy_restart_and_new_listeners_count_from_zero() -> None:
    tracker = RateLimitTracker(debounce_s=0)
    tracker.observe({STAT: 100}, ["pay"], now=0)
    (restart,) = tracker.observe({STAT: 4}, ["pay"], now=1)
    assert restart["rate_limited"] == 4
    new = "new.http_local_rate_limit.rate_limited"
    (appeared,) = tracker.observe({STAT: 4, new: 2}, ["pay", "new"], now=2)
    assert appeared["id"] == "new" and appeared["rate_limited"] == 2


def _stats(ejected: int = 0, rq_open: int = 0) -> dict[str, float]:
    return {
        "cluster.pay.outlier_detection.ejections_active": ejected,
        "cluster.pay.circuit_breakers.default.rq_open": rq_open,
    }


def test_breaker_transitions_only() -> None:
    tracker = BreakerTracker()
    assert tracker.observe(_stats(), ["pay"]) == []
    assert tracker.observe({}, ["pay"]) == [], "unknown cluster: no reading"
    ((kind, data),) = tracker.observe(_stats(ejected=1), ["pay"])
    assert kind == "integration.circuit_breaker_opened"
    assert data["reasons"] == ["outlier_ejection"] and data["ejections_active"] == 1
    assert tracker.observe(_stats(ejected=1, rq_open=1), ["pay"]) == [], "still open"
    ((kind, data),) = tracker.observe(_stats(), ["pay"])
    assert kind == "integration.circuit_breaker_closed" and data["reasons"] == []
    ((kind, data),) = tracker.observe(_stats(rq_open=1), ["pay"])
    assert data["reasons"] == ["rq_open"]


def test_envelope_problems() -> None:
    assert envelope_problems(make_event("x.y", {}, tenant="t", correlation_id="c")) == []
    assert envelope_problems([]) == ["not a JSON object"]
    bad = {"specversion": "0.3", "id": "", "source": "/s", "type": "t", "time": "yesterday"}
    problems = envelope_problems({**bad, "Bad_Name": 1})
    assert "id: required, a non-empty string" in problems
    assert "specversion: '0.3' is not 1.0" in problems
    assert "time: not an RFC 3339 timestamp" in problems
    assert "Bad_Name: not a valid attribute name" in problems


def test_seen_ids_is_a_bounded_lru() -> None:
    seen = SeenIds(capacity=2)
    assert seen.add(("s", "1")) and seen.add(("s", "2"))
    assert not seen.add(("s", "1")), "duplicate; now most recent"
    assert seen.add(("s", "3"))  # evicts ("s", "2")
    assert seen.add(("s", "2")) and not seen.add(("s", "3")) and len(seen) == 2
    assert seen.add(("other-source", "3")), "ids are unique per source"


def test_named_integrations_shapes() -> None:
    assert named_integrations({"integration": "a"}) == [("a", 1)]
    assert named_integrations({"integrations": ["a", {"id": "b", "calls": 4}, 7, {}]}) == [
        ("a", 1),
        ("b", 4),
    ]
    assert named_integrations({"integrations": [{"id": "c", "calls": -1}]}) == [("c", 1)]
    assert named_integrations("nope") == []
