"""What Linux ``/proc`` says about a process: its state, start time and command line.

Kept apart from the supervisor because only adoption needs it: an Envoy left behind by a
crashed control plane is not our child, so there is no exit status to wait on, and its pid
alone does not identify it (the kernel reuses pids). A pid plus its start time does, and the
command line tells whether that process is an Envoy run on our data directory. Every
function returns None (or False) when ``/proc`` has nothing to say, e.g. off Linux.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cmdline", "is_alive", "process_start_time"]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start_time)`` of *pid* from ``/proc/<pid>/stat`` (fields 3 and 22)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        # Field 2 is "(comm)" and comm may contain spaces and parentheses: split after it.
        fields = text[text.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """Clock ticks since boot at which *pid* started: with the pid, a process's identity."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def is_alive(pid: int, start_time: int) -> bool:
    """True while *pid* is the very process that started at *start_time*, and not a zombie.

    ``os.kill(pid, 0)`` alone is not enough: a dead Envoy whose new parent (init) does not
    reap it stays a zombie and still accepts signal 0, and a pid may be reused.
    """
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone, or another user's process: not our Envoy either way
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in {"Z", "X", "x"} and stat[1] == start_time


def cmdline(pid: int) -> list[str] | None:
    """The argv of *pid* from ``/proc/<pid>/cmdline``; None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0")[:-1]]
