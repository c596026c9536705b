"""What one probe found: the type the probe plug-ins return and the host records.

It lives with the plug-ins so that they can name it without importing the control plane
that runs them (``control_plane.probing``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["HealthState", "ProbeResult"]

HealthState = Literal["healthy", "unhealthy", "unknown"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    step: str
    detail: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 2),
            "step": self.step,
            "detail": self.detail,
            "at": self.at.isoformat(),
        }
