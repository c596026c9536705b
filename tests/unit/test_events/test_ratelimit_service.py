"""The global quota's rate-limit service going away and coming back, from Envoy's counters."""

from __future__ import annotations

import textwrap

from control_plane.events.ratelimit_service import RateLimitServiceTracker
from control_plane.registry.loader import parse_integrations_text

ITEMS = parse_integrations_text(
    textwrap.dedent(
        """
        integrations:
          - id: partner
            kind: http
            upstream: https://api.partner.example.com
            listen_port: 12001
            policies:
              rate_limit: {requests: 5, per: 1s, scope: global}
          - id: local
            kind: http
            upstream: https://local.example.com
            listen_port: 12002
            policies:
              rate_limit: {requests: 5, per: 1s}
        """
    ),
    "<test>",
)


def _stats(ok: int, error: int, allowed: int) -> dict[str, float]:
    p = "cluster.partner.ratelimit."
    return {p + "ok": ok, p + "error": error, p + "failure_mode_allowed": allowed}


def test_unavailable_once_then_available_when_answers_resume() -> None:
    tracker = RateLimitServiceTracker()
    assert tracker.observe(_stats(10, 0, 0), ITEMS) == []
    (event,) = tracker.observe(_stats(10, 4, 4), ITEMS)
    assert event[0] == "integration.rate_limit_unavailable"
    assert event[1]["errors"] == 4 and event[1]["failure_mode"] == "open"
    assert event[1]["allowed_unchecked"] == 4
    assert tracker.observe(_stats(10, 9, 9), ITEMS) == []  # still down: no repeat
    (back,) = tracker.observe(_stats(15, 9, 9), ITEMS)
    assert back[0] == "integration.rate_limit_available"
    assert tracker.observe(_stats(20, 9, 9), ITEMS) == []


def test_pod_scope_and_unseen_counters_are_ignored() -> None:
    tracker = RateLimitServiceTracker()
    assert tracker.observe({"cluster.local.ratelimit.error": 3}, ITEMS) == []
    assert tracker.observe({}, ITEMS) == []
