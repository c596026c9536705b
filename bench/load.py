"""Run the load generator as a child process and summarise what it measured."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import run_module

__all__ = ["Load", "LoadSpec", "median", "percentile", "run_load"]

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already *sorted* ``values`` (NaN when empty)."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(values)))
    return float(values[min(rank, len(values)) - 1])


def median(values: Iterable[float]) -> float:
    data = [v for v in values if not math.isnan(v)]
    return statistics.median(data) if data else math.nan


@dataclass(frozen=True, slots=True)
class LoadSpec:
    port: int
    rate: float = 1000.0
    duration: float = 5.0
    warmup: float = 1.0
    closed: int = 0
    connections: int = 16
    paths: tuple[str, ...] = ("/",)
    headers: tuple[str, ...] = ()
    timeout: float = 5.0
    cpu: int | None = None


@dataclass(slots=True)
class Load:
    """One generator run: the raw arrays plus summaries over successful requests."""

    raw: dict[str, Any]
    latency_us: list[int] = field(default_factory=list)  # sorted, from the intended time
    service_us: list[int] = field(default_factory=list)  # sorted, from the actual send

    @property
    def ok(self) -> int:
        return sum(1 for s in self.raw["status"] if s == 200)

    @property
    def errors(self) -> int:
        return int(self.raw["measured"]) - self.ok

    @property
    def throughput(self) -> float:
        return self.ok / float(self.raw["duration_s"])

    def latency(self, p: float) -> float:
        return percentile(self.latency_us, p)

    def lag_p99(self) -> float:
        lags = sorted(v for v in self.raw["send_lag_us"] if v >= 0)
        return percentile(lags, 99.0)

    def summary(self) -> dict[str, float]:
        out = {f"p{p:g}": self.latency(p) for p in PERCENTILES}
        out["max"] = float(self.latency_us[-1]) if self.latency_us else math.nan
        out["errors"] = float(self.errors)
        out["send_lag_p99"] = self.lag_p99()
        return out


async def run_load(spec: LoadSpec, out: Path) -> Load:
    args = [
        "--port",
        str(spec.port),
        "--duration",
        str(spec.duration),
        "--warmup",
        str(spec.warmup),
        "--connections",
        str(spec.connections),
        "--timeout",
        str(spec.timeout),
        "--out",
        str(out),
    ]
    args += ["--closed", str(spec.closed)] if spec.closed else ["--rate", str(spec.rate)]
    for path in spec.paths:
        args += ["--path", path]
    for header in spec.headers:
        args += ["--header", header]
    if spec.cpu is not None:
        args += ["--cpu", str(spec.cpu)]
    await run_module("bench.loadgen", args, limit_s=spec.warmup + spec.duration + spec.timeout + 30)
    raw = json.loads(await asyncio.to_thread(out.read_text))
    ok = [i for i, s in enumerate(raw["status"]) if s == 200]
    return Load(
        raw,
        sorted(raw["latency_us"][i] for i in ok),
        sorted(raw["service_us"][i] for i in ok),
    )
