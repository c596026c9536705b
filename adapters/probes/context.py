"""What a probe gets (``ProbeContext``) and how it reports (``ok`` / ``fail`` at a step).

A probe talks to the integration's *sidecar port* exactly like the user's app would, with
the kind's own client library. It never sees the credentials Envoy injects; it may resolve
the credentials the app itself holds end to end (a PostgreSQL or Redis password), through
``credential()``, which goes via the same resolver as SDS and so registers the value with
the log scrubber.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.probes.result import ProbeResult
from control_plane.model import CredentialRef, Integration

__all__ = ["Probe", "ProbeContext"]

Resolver = Callable[[CredentialRef], str | None]


def _no_credentials(ref: CredentialRef) -> str | None:
    return None


@dataclass(slots=True)
class ProbeContext:
    integration: Integration
    # Envoy's listen address for integration listeners (TranslateOptions.listen_address).
    host: str = "127.0.0.1"
    # Per-operation budget; the prober also bounds the whole probe with it.
    timeout: float = 10.0
    resolve: Resolver = _no_credentials
    # The stage in progress: a timeout or an unexpected error is reported at this step.
    step: str = "connect"
    started: float = field(default_factory=time.monotonic)
    # Token mode: the broker's token state for the integration (``valid``, ``failing``,
    # ``expired``, ...) and its last error; None when the integration mints no token.
    token_state: tuple[str, str | None] | None = None

    @property
    def port(self) -> int:
        port = self.integration.listen_port
        if port is None:
            raise ValueError(f"integration {self.integration.id!r} has no listen_port")
        return port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.integration.settings

    def credential(self, slot: str) -> str | None:
        ref = self.integration.credentials.get(slot)
        return None if ref is None else self.resolve(ref)

    def at(self, step: str) -> None:
        self.step = step

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0

    def ok(self, detail: str) -> ProbeResult:
        return ProbeResult(ok=True, latency_ms=self.elapsed_ms(), step=self.step, detail=detail)

    def fail(self, detail: str, step: str | None = None) -> ProbeResult:
        return ProbeResult(
            ok=False, latency_ms=self.elapsed_ms(), step=step or self.step, detail=detail
        )


Probe = Callable[[ProbeContext], Awaitable[ProbeResult]]
