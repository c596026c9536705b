"""Child processes of the benchmark: spawn, pin to cores, read CPU time and memory.

CPU time and RSS come from ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` (Linux), for the
whole process (all threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CORES",
    "Child",
    "cpu_seconds",
    "pin",
    "rss_bytes",
    "run_in_trees",
    "run_module",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ROOT = Path(__file__).resolve().parents[1]


def _cores() -> tuple[int | None, int | None]:
    """(load generator core, proxy-under-test core); None when pinning is impossible."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


CORES = _cores()


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pin(pid: int, cpu: int | None) -> None:
    """Pin every thread of ``pid`` to ``cpu`` (threads created later inherit it)."""
    if cpu is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.sched_setaffinity(int(task.name), {cpu})


class Child:
    """A Python module run as a child process; optionally waits for a ``READY {json}`` line."""

    def __init__(self, module: str, args: Sequence[str], *, log: Path) -> None:
        self.module, self.args, self.log_path = module, list(args), log
        self.process: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, *, wait_ready: bool, ready_within_s: float = 20.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            stdout=asyncio.subprocess.PIPE if wait_ready else log,
            stderr=log,
            cwd=ROOT,
        )
        log.close()
        if wait_ready:
            assert self.process.stdout is not None
            async with asyncio.timeout(ready_within_s):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        raise RuntimeError(f"{self.module} exited: see {self.log_path}")
                    if line.startswith(b"READY "):
                        self.ready = json.loads(line[6:])
                        return

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def stop(self, grace_s: float = 10.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def run_module(module: str, args: Sequence[str], *, limit_s: float) -> None:
    """Run ``python -m module args`` to completion (killed past ``limit_s``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(limit_s):
            _, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{module} failed ({process.returncode}): {err.decode()[-2000:]}")


def run_in_trees(
    script: str, trees: Sequence[Path] | None, per_tree: Sequence[Sequence[str]]
) -> dict[str, list[dict[str, Any]]]:
    """Run bench ``script`` (a file path) as a script once per argument list, on each tree's
    code (``PYTHONPATH`` = the tree; default: this checkout), and collect the JSON each run
    prints last. As a script, the file measures a tree that predates it with this code.
    Keyed "this tree" or the tree's directory name."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for tree in [t.resolve() for t in (trees or [ROOT])]:
        label = "this tree" if tree == ROOT.resolve() else tree.name
        runs[label] = []
        for args in per_tree:
            out = subprocess.run(
                [sys.executable, script, *args],
                cwd=tree,
                env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
            runs[label].append(dict(json.loads(out.strip().splitlines()[-1])))
    return runs
