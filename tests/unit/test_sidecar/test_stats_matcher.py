"""The bootstrap's stats exclusion list never drops a stat our code reads, and never matches
inside an integration id.

The patterns are evaluated as Envoy does: ``contains`` is a substring test, ``safe_regex`` a
full match (RE2; these patterns use only syntax Python's ``re`` reads the same way). The
real Envoy is checked by ``tests/e2e/test_envoy_stats.py``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from control_plane.model import ID_PATTERN
from control_plane.probing import runner
from control_plane.sidecar.admin import CIRCUIT_BREAKER_GAUGES
from control_plane.sidecar.bootstrap import render_bootstrap

ID = "pay-http3-lb-tracing-0"  # an id holding the words the patterns name


def _patterns() -> list[dict[str, Any]]:
    bootstrap = yaml.safe_load(render_bootstrap("n", "c", "127.0.0.1", 18000, 9901))
    patterns: list[dict[str, Any]] = bootstrap["stats_config"]["stats_matcher"]["exclusion_list"][
        "patterns"
    ]
    return patterns


def _excluded(name: str) -> bool:
    for pattern in _patterns():
        if "contains" in pattern and pattern["contains"] in name:
            return True
        if "safe_regex" in pattern and re.fullmatch(pattern["safe_regex"]["regex"], name):
            return True
    return False


READ = [
    # events watcher and overview page
    f"{ID}.http_local_rate_limit.ok",
    f"{ID}.http_local_rate_limit.rate_limited",
    *(f"cluster.{ID}.ratelimit.{k}" for k in ("ok", "over_limit", "error", "failure_mode_allowed")),
    f"cluster.{ID}.membership_total",
    f"cluster.{ID}.outlier_detection.ejections_active",
    f"cluster.{ID}.outlier_detection.ejections_enforced_total",
    # circuit-breaker and probing API
    *(f"cluster.{ID}.circuit_breakers.default.{g}" for g in CIRCUIT_BREAKER_GAUGES),
    *(f"cluster.{ID}.circuit_breakers.high.{g}" for g in CIRCUIT_BREAKER_GAUGES),
    *(f"cluster.{ID}.{c}" for c in runner._TLS_COUNTERS),
    *(f"cluster.{ID}.{c}" for c in runner._CONNECT_COUNTERS),
    # dashboards and alerts (docs/deployment.md, "Dashboards and alerts")
    *(
        f"cluster.{ID}.{s}"
        for s in (
            "upstream_rq_total",
            "upstream_rq_2xx",
            "upstream_rq_503",
            "upstream_rq_completed",
            "upstream_rq_time",
            "upstream_rq_timeout",
            "upstream_rq_pending_overflow",
            "upstream_rq_retry_overflow",
            "upstream_cx_total",
            "upstream_cx_overflow",
            "upstream_cx_pool_overflow",
            "ssl.certificate.xds.expiration_unix_time_seconds",
        )
    ),
    f"http.{ID}.downstream_rq_total",
    f"http.{ID}.downstream_rq_5xx",
    f"http.{ID}.downstream_rq_time",
    "cluster_manager.cds.update_rejected",
    "listener_manager.lds.update_rejected",
    "server.live",
    "server.days_until_first_cert_expiring",
]


@pytest.mark.parametrize("name", READ)
def test_a_stat_we_read_is_kept(name: str) -> None:
    assert not _excluded(name), name


def test_no_pattern_matches_inside_an_id() -> None:
    """Every pattern needs a '.' or '_', which an id cannot hold; so the kept stats of an id
    full of pattern words are kept, and an excluded family is excluded whatever the id."""
    assert ID_PATTERN.match(ID)
    for pattern in _patterns():
        text = pattern.get("contains") or pattern["safe_regex"]["regex"]
        assert "." in text or "_" in text, pattern
    assert _excluded(f"cluster.{ID}.lb_healthy_panic")
    assert not _excluded(f"cluster.{ID}.upstream_rq_total")
