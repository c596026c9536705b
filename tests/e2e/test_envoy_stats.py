"""The bootstrap's stats matcher against a real Envoy: every stat we read is kept, the
families nobody reads are gone.

The control plane (embedded Envoy, the rendered bootstrap) serves one integration with a
rate limit, breakers and outlier detection; after traffic, Envoy's own ``/stats`` and
``/stats/prometheus`` must hold each stat that an event watcher, an API field, a dashboard
panel or an alert reads, and none of the excluded families (``envoy/bootstrap.yaml``).
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from control_plane.sidecar.admin import EnvoyAdmin
from tests.e2e.faults.stack import running_service
from tests.support.ports import free_port
from tests.support.upstream import running_upstream

pytestmark = pytest.mark.envoy

ID = "billing"

# Read by the events watcher, the overview page, the breaker/probing API and the dashboards.
KEPT = (
    f"{ID}.http_local_rate_limit.ok",
    f"{ID}.http_local_rate_limit.rate_limited",
    f"cluster.{ID}.membership_total",
    f"cluster.{ID}.membership_healthy",
    f"cluster.{ID}.outlier_detection.ejections_active",
    f"cluster.{ID}.outlier_detection.ejections_enforced_total",
    f"cluster.{ID}.circuit_breakers.default.cx_open",
    f"cluster.{ID}.circuit_breakers.default.rq_open",
    f"cluster.{ID}.circuit_breakers.default.rq_pending_open",
    f"cluster.{ID}.circuit_breakers.default.rq_retry_open",
    f"cluster.{ID}.circuit_breakers.default.remaining_rq",
    f"cluster.{ID}.circuit_breakers.high.rq_open",
    f"cluster.{ID}.upstream_rq_total",
    f"cluster.{ID}.upstream_rq_2xx",
    f"cluster.{ID}.upstream_rq_completed",
    f"cluster.{ID}.upstream_rq_timeout",
    f"cluster.{ID}.upstream_rq_pending_overflow",
    f"cluster.{ID}.upstream_rq_retry_overflow",
    f"cluster.{ID}.upstream_cx_total",
    f"cluster.{ID}.upstream_cx_connect_fail",
    f"cluster.{ID}.upstream_cx_connect_timeout",
    f"cluster.{ID}.upstream_cx_overflow",
    f"cluster.{ID}.upstream_cx_pool_overflow",
    f"http.{ID}.downstream_rq_total",
    f"http.{ID}.downstream_rq_2xx",
    f"http.{ID}.downstream_rq_active",
    f"listener.{ID}.downstream_cx_total",
    f"listener.{ID}.downstream_cx_active",
    "cluster_manager.cds.update_rejected",
    "listener_manager.lds.update_rejected",
    "server.live",
)
# A sample of each excluded family.
DROPPED = (
    f"cluster.{ID}.lb_healthy_panic",
    f"cluster.{ID}.outlier_detection.ejections_detected_consecutive_5xx",
    f"cluster.{ID}.outlier_detection.ejections_enforced_consecutive_5xx",
    f"cluster.{ID}.upstream_flow_control_paused_reading_total",
    f"cluster.{ID}.upstream_cx_destroy_local",
    f"cluster.{ID}.upstream_rq_retry_backoff_exponential",
    f"cluster.{ID}.assignment_stale",
    f"cluster.{ID}.upstream_cx_http3_total",
    f"http.{ID}.tracing.random_sampling",
    f"http.{ID}.downstream_cx_http1_total",
    f"http.{ID}.downstream_rq_http1_total",
    f"http.{ID}.passthrough_internal_redirect_no_route",
    f"http.{ID}.rq_total",
    f"listener.{ID}.worker_0.downstream_cx_total",
    f"listener.{ID}.http.{ID}.downstream_rq_2xx",
)


async def test_the_stats_we_read_are_kept_and_the_unread_families_dropped(
    tmp_path: Path,
) -> None:
    port = free_port()
    policies = (
        "{rate_limit: {requests: 1000, per: 1s}, "
        "circuit_breaker: {max_connections: 10, max_pending_requests: 10, max_requests: 10}, "
        "outlier_detection: {consecutive_5xx: 5, interval: 10s, base_ejection_time: 30s}}"
    )
    async with running_upstream() as upstream:
        registry = (
            f"integrations:\n  - id: {ID}\n    kind: http\n    upstream: {upstream.url}\n"
            f"    listen_port: {port}\n    policies: {policies}\n"
        )
        async with (
            running_service(tmp_path, registry) as (service, _),
            aiohttp.ClientSession() as session,
        ):
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{port}/hello") as response:
                    assert response.status == 200
            async with EnvoyAdmin(f"http://127.0.0.1:{service.envoy_admin_port}") as admin:
                stats = await admin.stats()
                prometheus = await admin.stats_prometheus()

    missing = [name for name in KEPT if name not in stats]
    assert not missing, f"kept stats missing from Envoy: {missing}"
    present = [name for name in DROPPED if name in stats]
    assert not present, f"excluded stats still kept: {present}"
    # The latency histogram the dashboards read; the excluded length histograms are gone.
    histogram = r'^envoy_cluster_upstream_rq_time_bucket\{envoy_cluster_name="billing"'
    assert re.search(histogram, prometheus, re.M)
    assert "envoy_cluster_upstream_cx_length_ms_bucket" not in prometheus
    # About 250 per integration without the matcher.
    own = [n for n in stats if f".{ID}." in f".{n}" or n.startswith(f"{ID}.")]
    assert len(own) < 130, len(own)
