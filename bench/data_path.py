"""B1 latency overhead, B2 CPU per 1,000 req/s, B3 fail-fast: direct vs sidecar vs Python.

One stack serves all three: a fast loopback upstream per scenario, the real control plane
configuring a real Envoy (``--concurrency 1``), and the reference Python proxy. Envoy and
the Python proxy share the "proxy" core; the generator, the upstreams and the control plane
share the other. The three paths are measured in an interleaved order within each round so
slow drift of the machine affects them alike; each figure is the median over the rounds.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import Load, LoadSpec, median, percentile, run_load
from bench.procs import CORES, Child, cpu_seconds, pin
from bench.registry_docs import document, free_ports, integrations_yaml
from bench.stack import Stack, sidecar_stack, wait_http
from control_plane.sidecar.supervisor import EnvoySupervisor

__all__ = ["DataPathConfig", "run_data_path"]

PATHS = ("direct", "sidecar", "python")
# Reference only, at one rate: Envoy with a minimal static config (router only, no access
# log, no rate limit, no outlier detection) tells Envoy's own cost from our configuration's.
BARE = "bare"
BARE_RATE = 1000

_HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)
_BARE_BOOTSTRAP = """
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
static_resources:
  listeners:
  - name: bare
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}
          stat_prefix: bare
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: up}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}
"""


@dataclass(frozen=True, slots=True)
class DataPathConfig:
    rates: tuple[int, ...] = (500, 1000, 2000)
    durations: dict[int, float] = field(default_factory=lambda: {500: 8.0, 1000: 5.0, 2000: 4.0})
    warmup: float = 1.0
    rounds: int = 3
    failfast_rounds: int = 3
    failfast_rate: int = 1000
    failfast_duration: float = 3.0
    failfast_after: float = 1.2


def _sample_cpu(pid: int | None) -> float:
    return cpu_seconds(pid) if pid is not None else math.nan


async def _b1(
    stack: Stack, ports: dict[str, int], pids: dict[str, int | None], cfg: DataPathConfig, tmp: Path
) -> dict[str, Any]:
    gen_cpu = CORES[0]
    runs: list[dict[str, Any]] = []
    distributions: dict[str, list[int]] = {}
    for round_no in range(cfg.rounds):
        for rate in cfg.rates:
            order = PATHS[round_no % 3 :] + PATHS[: round_no % 3]
            if rate == BARE_RATE and BARE in ports:
                order = (*order, BARE)
            for path in order:
                pid = pids[path]
                cpu_before = _sample_cpu(pid)
                wall = time.monotonic()
                load = await run_load(
                    LoadSpec(
                        port=ports[path],
                        rate=rate,
                        duration=cfg.durations.get(rate, 4.0),
                        warmup=cfg.warmup,
                        cpu=gen_cpu,
                    ),
                    tmp / f"b1-{path}-{rate}-{round_no}.json",
                )
                cpu = _sample_cpu(pid) - cpu_before
                wall = time.monotonic() - wall
                sent = int(load.raw["sent"])
                summary = load.summary()
                runs.append(
                    {
                        "round": round_no,
                        "rate": rate,
                        "path": path,
                        **summary,
                        "throughput": load.throughput,
                        # CPU seconds per request x 1000 req/s = cores per 1,000 req/s.
                        "cores_per_krps": cpu / sent * 1000 if sent else math.nan,
                        "cpu_s": cpu,
                        "wall_s": wall,
                    }
                )
                if round_no == 0:
                    distributions[f"{path}@{rate}"] = load.latency_us
    return {"runs": runs, "distributions": distributions, "summary": _b1_summary(runs, cfg)}


def _b1_summary(runs: list[dict[str, Any]], cfg: DataPathConfig) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for rate in cfg.rates:
        row: dict[str, Any] = {}
        for path in (*PATHS, BARE):
            mine = [r for r in runs if r["rate"] == rate and r["path"] == path]
            if not mine:
                continue
            row[path] = {
                key: median(r[key] for r in mine)
                for key in ("p50", "p90", "p99", "p99.9", "max", "errors", "cores_per_krps")
            }
            row[path]["send_lag_p99"] = max(r["send_lag_p99"] for r in mine)
        for proxy in ("sidecar", "python", BARE):
            if proxy not in row:
                continue
            overhead: dict[str, float] = {}
            for key in ("p50", "p99", "p99.9"):
                # Paired per round (same round, same machine state), then the median.
                diffs = []
                for round_no in range(cfg.rounds):
                    a = [
                        r
                        for r in runs
                        if (r["round"], r["rate"], r["path"]) == (round_no, rate, proxy)
                    ]
                    b = [
                        r
                        for r in runs
                        if (r["round"], r["rate"], r["path"]) == (round_no, rate, "direct")
                    ]
                    if a and b:
                        diffs.append(a[0][key] - b[0][key])
                overhead[key] = median(diffs)
            row[f"{proxy}_overhead"] = overhead
        table[str(rate)] = row
    return table


async def _reset_sidecar_breaker(stack: Stack, ident: str, url: str) -> None:
    status, body, _ = await stack.request("POST", f"/integrations/{ident}/circuit-breaker/reset")
    if status != 200:
        raise RuntimeError(f"breaker reset failed: {status} {body}")
    await wait_http(url, deadline_s=10)


async def _failfast_once(
    upstream: Child,
    stats: Path,
    port: int,
    cfg: DataPathConfig,
    out: Path,
) -> dict[str, Any]:
    await asyncio.to_thread(stats.unlink, missing_ok=True)
    spec = LoadSpec(
        port=port,
        rate=cfg.failfast_rate,
        duration=cfg.failfast_duration,
        warmup=0.0,
        cpu=CORES[0],
        timeout=3.0,
    )
    task = asyncio.create_task(run_load(spec, out))
    await asyncio.sleep(cfg.failfast_after)
    upstream.signal(signal.SIGUSR1)
    load = await task
    upstream.signal(signal.SIGUSR2)
    for _ in range(100):
        text = await asyncio.to_thread(_read_if_any, stats)
        if text:
            break
        await asyncio.sleep(0.02)
    return _failfast_analysis(load, json.loads(text))


def _read_if_any(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _failfast_analysis(load: Load, up: dict[str, Any]) -> dict[str, Any]:
    raw = load.raw
    t0 = int(raw["t0_ns"])
    arrivals = [int(a) for a in up["failed_arrivals_ns"]]
    fail_since = int(up["fail_since_ns"])
    first_failure = arrivals[0] if arrivals else fail_since
    rejected_lat: list[int] = []
    rejected_svc: list[int] = []
    failed_through = 0
    first_rejected_ns: int | None = None
    timeline: list[tuple[float, int, int]] = []
    for i, status in enumerate(raw["status"]):
        done = raw["done_offset_us"][i]
        if done < 0:
            continue
        done_ns = t0 + done * 1000
        reached = bool(raw["reached"][i])
        timeline.append(((done_ns - first_failure) / 1e6, raw["service_us"][i], int(reached)))
        if done_ns < first_failure or status == 200:
            continue
        if reached:
            failed_through += 1
        else:
            rejected_lat.append(raw["latency_us"][i])
            rejected_svc.append(raw["service_us"][i])
            if first_rejected_ns is None or done_ns < first_rejected_ns:
                first_rejected_ns = done_ns
    rejected_lat.sort()
    rejected_svc.sort()
    return {
        "reached_after_failure": len(arrivals),
        "failed_responses_through": failed_through,
        # From the first failed request at the upstream to the last one that still got there.
        "failing_window_ms": (arrivals[-1] - arrivals[0]) / 1e6 if arrivals else math.nan,
        # From the first failed request at the upstream to the first fail-fast answer.
        "time_to_fail_fast_ms": (first_rejected_ns - first_failure) / 1e6
        if first_rejected_ns is not None
        else math.nan,
        "rejected": len(rejected_svc),
        "rejected_p50_us": percentile(rejected_svc, 50),
        "rejected_p99_us": percentile(rejected_svc, 99),
        "rejected_p99_from_intended_us": percentile(rejected_lat, 99),
        "healthy_p50_us": percentile(load.service_us, 50),
        "timeline": timeline,
    }


async def _b3(
    stack: Stack,
    sidecar_port: int,
    upstream: Child,
    upstream_port: int,
    stats: Path,
    cfg: DataPathConfig,
    tmp: Path,
) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {"sidecar": [], "python": []}
    sidecar_url = f"http://127.0.0.1:{sidecar_port}/"
    for round_no in range(cfg.failfast_rounds):
        await _reset_sidecar_breaker(stack, "failfast", sidecar_url)
        results["sidecar"].append(
            await _failfast_once(upstream, stats, sidecar_port, cfg, tmp / f"b3-s-{round_no}.json")
        )
        py_port = free_ports(1, start=18600, stop=19600)[0]
        proxy = Child(
            "bench.python_proxy",
            ["--upstream", f"http://127.0.0.1:{upstream_port}", "--port", str(py_port)]
            + (["--cpu", str(CORES[1])] if CORES[1] is not None else []),
            log=tmp / "python-proxy-b3.log",
        )
        await proxy.start(wait_ready=False)
        try:
            await wait_http(f"http://127.0.0.1:{py_port}/", deadline_s=10)
            results["python"].append(
                await _failfast_once(upstream, stats, py_port, cfg, tmp / f"b3-p-{round_no}.json")
            )
        finally:
            await proxy.stop()
    summary: dict[str, Any] = {}
    for name, rounds in results.items():
        summary[name] = {
            key: median(float(r[key]) for r in rounds)
            for key in (
                "reached_after_failure",
                "failed_responses_through",
                "failing_window_ms",
                "time_to_fail_fast_ms",
                "rejected",
                "rejected_p50_us",
                "rejected_p99_us",
                "rejected_p99_from_intended_us",
                "healthy_p50_us",
            )
        }
    timelines = {name: rounds[0]["timeline"] for name, rounds in results.items() if rounds}
    for rounds in results.values():
        for r in rounds:
            r.pop("timeline", None)
    return {"rounds": results, "summary": summary, "timelines": timelines}


async def run_data_path(cfg: DataPathConfig, tmp: Path, token: str | None) -> dict[str, Any]:
    gen_cpu, proxy_cpu = CORES
    # The upstreams share the proxy's core: then every path (direct or proxied) crosses
    # between the two cores exactly twice, and the overhead measured is the proxy's work.
    up_args = ["--cpu", str(proxy_cpu)] if proxy_cpu is not None else []
    upstream = Child(
        "bench.upstream",
        ["--labels", "A", "--stats", str(tmp / "up-b1.json"), *up_args],
        log=tmp / "upstream-b1.log",
    )
    ff_stats = tmp / "up-b3.json"
    ff_upstream = Child(
        "bench.upstream",
        ["--labels", "F", "--stats", str(ff_stats), *up_args],
        log=tmp / "upstream-b3.log",
    )
    await upstream.start(wait_ready=True)
    await ff_upstream.start(wait_ready=True)
    up_port = int(upstream.ready["ports"][0])
    ff_port = int(ff_upstream.ready["ports"][0])
    sidecar_port, ff_sidecar_port, py_port = free_ports(3, start=18000, stop=18600)
    registry = integrations_yaml(
        [document("bench", up_port, sidecar_port), document("failfast", ff_port, ff_sidecar_port)]
    )
    proxy = Child(
        "bench.python_proxy",
        ["--upstream", f"http://127.0.0.1:{up_port}", "--port", str(py_port)]
        + (["--cpu", str(proxy_cpu)] if proxy_cpu is not None else []),
        log=tmp / "python-proxy.log",
    )
    try:
        async with sidecar_stack(
            tmp / "stack-b1",
            registry,
            envoy_cpu=proxy_cpu,
            service_cpu=gen_cpu,
            token=token,
        ) as stack:
            await proxy.start(wait_ready=False)
            await wait_http(f"http://127.0.0.1:{py_port}/")
            await wait_http(f"http://127.0.0.1:{sidecar_port}/")
            ports = {"direct": up_port, "sidecar": sidecar_port, "python": py_port}
            pids: dict[str, int | None] = {
                "direct": None,
                "sidecar": stack.envoy_pid,
                "python": proxy.pid,
            }
            bare_port = free_ports(1, start=18700, stop=19000)[0]
            bare = EnvoySupervisor(
                _BARE_BOOTSTRAP.format(listen=bare_port, upstream=up_port, hcm=_HCM),
                tmp / "envoy-bare",
                concurrency=1,
                log_level="warning",
                drain_time_s=0,
                parent_shutdown_time_s=1,
                stop_drain_s=0.1,
                terminate_timeout=5.0,
            )
            await bare.start()
            try:
                assert bare.pid is not None
                pin(bare.pid, proxy_cpu)
                await wait_http(f"http://127.0.0.1:{bare_port}/")
                ports[BARE] = bare_port
                pids[BARE] = bare.pid
                b1 = await _b1(stack, ports, pids, cfg, tmp)
            finally:
                await bare.stop()
            await proxy.stop()
            b3 = await _b3(stack, ff_sidecar_port, ff_upstream, ff_port, ff_stats, cfg, tmp)
    finally:
        await proxy.stop()
        await upstream.stop()
        await ff_upstream.stop()
    return {"b1": b1, "b3": b3}
