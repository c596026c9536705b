"""B4 propagation through the real stack, and B6 management API throughput.

One stack: N integrations (N-1 declared in the integrations file, one registered through the
API), the control plane configuring a real Envoy over delta ADS.

B4: the registered integration is switched between two upstream ports with ``PUT
/integrations/{id}`` (If-Match); the time from sending the PUT to the first request that
Envoy serves from the new upstream is one propagation sample. The data path is polled with
about a millisecond between requests, so a sample is accurate to ~1-2 ms.

B6: closed-loop load on ``GET /integrations/{id}`` (over many ids) and ``GET
/integrations`` (first page, 100 items) with the control plane alone on one core.
Authentication is on: B4's REST calls and every B6 request carry an admin API key issued by
the service, which it checks against its store (cached for 1 s; see ``bench.stack``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import LoadSpec, median, percentile, run_load
from bench.procs import CORES, Child, cpu_seconds, pin
from bench.registry_docs import document, free_ports, integrations_yaml
from bench.stack import Stack, sidecar_stack, wait_http

__all__ = ["LiveConfig", "run_live"]

TARGET = "target"


@dataclass(frozen=True, slots=True)
class LiveConfig:
    integrations: int = 1000
    changes: int = 100
    api_rounds: int = 3
    api_duration: float = 4.0
    api_connections: int = 8


async def _first_from(
    session: aiohttp.ClientSession, url: str, label: str, deadline_s: float
) -> float:
    """Poll ``url`` until an answer comes from upstream ``label``; returns monotonic time."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            async with session.get(url) as response:
                await response.read()
                if response.headers.get("x-upstream") == label:
                    return time.monotonic()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.001)
    raise TimeoutError(f"no answer from upstream {label} within {deadline_s}s")


async def _propagation(
    stack: Stack, ports: dict[str, int], listen_port: int, changes: int
) -> dict[str, Any]:
    doc = document(TARGET, ports["A"], listen_port)
    status, body, headers = await stack.request("POST", "/integrations", doc)
    if status != 201:
        raise RuntimeError(f"register failed: {status} {body}")
    etag = headers["ETag"]
    url = f"http://127.0.0.1:{listen_port}/"
    await wait_http(url, label="A", deadline_s=30)
    samples: list[float] = []
    api_ms: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as data:
        for k in range(changes):
            label = "B" if k % 2 == 0 else "A"
            doc = document(TARGET, ports[label], listen_port)
            started = time.monotonic()
            status, body, headers = await stack.request(
                "PUT", f"/integrations/{TARGET}", doc, headers={"If-Match": etag}
            )
            answered = time.monotonic()
            if status != 200:
                raise RuntimeError(f"PUT failed: {status} {body}")
            etag = headers["ETag"]
            served = await _first_from(data, url, label, deadline_s=10.0)
            samples.append((served - started) * 1000)
            api_ms.append((answered - started) * 1000)
            await asyncio.sleep(0.05)  # let the ACKs land before the next change
    ordered = sorted(samples)
    return {
        "samples_ms": samples,
        "put_samples_ms": api_ms,
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1],
        "put_p50_ms": percentile(sorted(api_ms), 50),
        "put_p99_ms": percentile(sorted(api_ms), 99),
    }


async def _api(stack: Stack, cfg: LiveConfig, tmp: Path, token: str | None) -> dict[str, Any]:
    """B6 with the stack's issued key (``token`` only says whether one was configured)."""
    gen_cpu, proxy_cpu = CORES
    # The control plane alone on the "proxy" core; Envoy (idle here) moves to the other.
    pin(stack.service_pid, proxy_cpu)
    pin(stack.envoy_pid, gen_cpu)
    headers = tuple(f"{k}: {v}" for k, v in stack.auth.items())
    ids = [f"/integrations/int-{i:05d}" for i in range(0, cfg.integrations - 1, 7)][:100]
    endpoints = {"get": tuple(ids), "list": ("/integrations",)}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in endpoints}
    for round_no in range(cfg.api_rounds):
        for name, paths in endpoints.items():
            before = cpu_seconds(stack.service_pid)
            load = await run_load(
                LoadSpec(
                    port=stack.service.port,
                    closed=cfg.api_connections,
                    duration=cfg.api_duration,
                    warmup=0.5,
                    paths=paths,
                    headers=headers,
                    cpu=gen_cpu,
                ),
                tmp / f"b6-{name}-{round_no}.json",
            )
            cpu = cpu_seconds(stack.service_pid) - before
            rounds[name].append(
                {
                    "rps": load.throughput,
                    "p50_us": percentile(load.service_us, 50),
                    "p99_us": percentile(load.service_us, 99),
                    "errors": float(load.errors),
                    "cpu_cores": cpu / (cfg.api_duration + 0.5),
                }
            )
    return {
        name: {key: median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rounds.items()
    } | {"token_sent": True, "auth": "api_key_store", "configured_token": token is not None}


async def run_live(cfg: LiveConfig, tmp: Path, token: str | None) -> dict[str, Any]:
    gen_cpu, proxy_cpu = CORES
    upstream = Child(
        "bench.upstream",
        ["--labels", "A,B", "--stats", str(tmp / "up-b4.json")]
        + (["--cpu", str(gen_cpu)] if gen_cpu is not None else []),
        log=tmp / "upstream-b4.log",
    )
    await upstream.start(wait_ready=True)
    ports = dict(zip(("A", "B"), (int(p) for p in upstream.ready["ports"]), strict=True))
    listen = free_ports(cfg.integrations)
    docs = [document(f"int-{i:05d}", ports["A"], listen[i]) for i in range(cfg.integrations - 1)]
    started = time.monotonic()
    try:
        async with sidecar_stack(
            tmp / "stack-b4",
            integrations_yaml(docs),
            envoy_cpu=proxy_cpu,
            service_cpu=gen_cpu,
            token=token,
            ready_deadline_s=240.0,
        ) as stack:
            ready_s = time.monotonic() - started
            b4 = await _propagation(stack, ports, listen[-1], cfg.changes)
            b4["integrations"] = cfg.integrations
            b4["stack_ready_s"] = ready_s
            b6 = await _api(stack, cfg, tmp, token)
            b6["integrations"] = cfg.integrations
    finally:
        await upstream.stop()
    return {"b4": b4, "b6": b6}
