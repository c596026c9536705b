"""Recognise Envoy's own (local) replies, so an HTTP probe names the stage that failed.

When Envoy cannot reach the upstream it answers the app itself, with fixed bodies:
``upstream connect error or disconnect/reset before headers. reset reason: ...`` (503,
with ``transport failure reason: TLS_error:...CERTIFICATE_VERIFY_FAILED`` when the
upstream's certificate was refused), ``no healthy upstream`` (503, host ejected or no
endpoints), ``upstream request timeout`` (504) and, from the credential injector,
``Failed to inject credential.`` (401; source/extensions/filters/http/credential_injector/
credential_injector_filter.cc) when it has no credential to add -- for OAuth2 that means
Envoy could not obtain a token.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SidecarFailure", "sidecar_failure"]

_CREDENTIAL = "Failed to inject credential."
_TLS_MARKERS = ("TLS_error", "CERTIFICATE_VERIFY_FAILED", "SSLV3_ALERT", "TLSV1_ALERT")


@dataclass(frozen=True, slots=True)
class SidecarFailure:
    step: str
    detail: str


def sidecar_failure(
    status: int, body: str, *, credential_step: str = "auth"
) -> SidecarFailure | None:
    """The failure Envoy reported itself, or None when the answer came from the upstream."""
    text = body.strip()
    if status == 401 and text == _CREDENTIAL:
        return SidecarFailure(
            credential_step,
            "the sidecar has no credential to inject (Envoy: 'Failed to inject credential.'); "
            "check the integration's credential references",
        )
    if status == 503 and text.startswith("upstream connect error"):
        reason = text.split("reset reason:", 1)[-1].strip()
        if any(marker in text for marker in _TLS_MARKERS):
            return SidecarFailure("tls", f"TLS handshake with the upstream failed ({reason})")
        return SidecarFailure("connect", f"Envoy could not connect to the upstream ({reason})")
    if status == 503 and text == "no healthy upstream":
        return SidecarFailure(
            "connect", "no healthy upstream host (ejected by outlier detection or no endpoints)"
        )
    if status == 504 and text == "upstream request timeout":
        return SidecarFailure("request", "the upstream did not answer within the route timeout")
    if status == 429 and text == "local_rate_limited":
        return SidecarFailure("request", "rate limited by the sidecar (policies.rate_limit)")
    return None
