"""Durations in documents: ``250ms``, ``10s``, ``2m``, ``1h`` or a number of seconds.

``parse_duration`` reads one; ``duration_problems`` reports those Envoy would refuse (longer
than a protobuf Duration holds, or shorter than the millisecond Envoy is given).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from control_plane.problems import Problem
from control_plane.registry.schema import DURATION_PATTERN
from control_plane.registry.yamlmarks import MarkedDocument

__all__ = ["MAX_DURATION_S", "duration_problems", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# google.protobuf.Duration's range: Envoy cannot take a longer duration (JSON Schema's
# pattern cannot bound the number in "99999999999h").
MAX_DURATION_S = 315_576_000_000

# Policy fields holding a duration (a bare number there is seconds, elsewhere a count).
_DURATION_FIELDS = frozenset(
    {
        "timeout",
        "connect_timeout",
        "idle_timeout",
        "per_try_timeout",
        "retry_after_max",
        "per",
        "interval",
        "base_ejection_time",
        "max_ejection_time",
    }
)


@functools.lru_cache(maxsize=4096)
def parse_duration(value: str | float | int) -> float:
    """Seconds from ``250ms``, ``10s``, ``2m``, ``1h`` or a plain number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    for unit in ("ms", "s", "m", "h"):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * _UNITS[unit]
    raise ValueError(f"not a duration: {value!r}")


def duration_problems(
    doc: MarkedDocument, value: Any, path: tuple[str | int, ...]
) -> list[Problem]:
    """Every duration under ``value`` (a policies block) that Envoy would refuse."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in duration_problems(doc, v, (*path, k))]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if (isinstance(value, str) and re.match(DURATION_PATTERN, value)) or (
        is_number and path and path[-1] in _DURATION_FIELDS
    ):
        if parse_duration(value) > MAX_DURATION_S:
            return [
                doc.problem(
                    path,
                    f"duration {value!r} is longer than Envoy accepts",
                    f"use at most {MAX_DURATION_S} seconds (about 10,000 years)",
                )
            ]
        # Envoy gets milliseconds; a zero timeout or interval is refused (connect_timeout
        # "must be greater than 0s"), and the whole update would be NACKed.
        if round(parse_duration(value) * 1000) == 0:
            return [
                doc.problem(
                    path,
                    f"duration {value!r} is shorter than 1 ms",
                    "give a positive duration of at least 1ms, or omit it for the default",
                )
            ]
    return []
