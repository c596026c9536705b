"""The app's security state (authenticators, limiter, SSRF guard) and the problems and
audit drafts its checks produce. No HTTP here: ``control_plane.api.caller`` holds the
per-request principal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.security.api_keys import ApiKeyAuthenticator
from control_plane.security.jwt import JwtVerifier
from control_plane.security.ratelimit import RateLimiter, SharedRateLimiter
from control_plane.security.ssrf import UpstreamGuard

__all__ = ["AuditDraft", "SecurityContext", "SecurityProblem", "utcnow"]


@dataclass(slots=True)
class SecurityContext:
    enabled: bool
    api_keys: ApiKeyAuthenticator
    jwt: JwtVerifier | None
    limiter: RateLimiter | SharedRateLimiter
    guard: UpstreamGuard
    metrics_auth: bool = False


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """What a handler wants audited beyond the generic integration before/after."""

    target: str
    tenant: str | None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None


class SecurityProblem(Exception):
    """Raised by handlers and hooks; the security middleware answers it as problem+json."""

    def __init__(self, status: int, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extensions = extensions


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
