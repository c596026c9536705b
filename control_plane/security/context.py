"""The app's security state and the per-request principal (typed aiohttp keys)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from control_plane.security.api_keys import ApiKeyAuthenticator
from control_plane.security.jwt import JwtVerifier
from control_plane.security.principal import Principal
from control_plane.security.ratelimit import RateLimiter
from control_plane.security.ssrf import UpstreamGuard

__all__ = [
    "AUDIT_DRAFT",
    "AUTH_HEADER",
    "PRINCIPAL",
    "SECURITY",
    "WARNINGS",
    "AuditDraft",
    "SecurityContext",
    "SecurityProblem",
    "principal_of",
    "sees",
]

AUTH_HEADER = "X-Integration-Service-Auth"


@dataclass(slots=True)
class SecurityContext:
    enabled: bool
    api_keys: ApiKeyAuthenticator
    jwt: JwtVerifier | None
    limiter: RateLimiter
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


SECURITY = web.AppKey("security", SecurityContext)
PRINCIPAL = web.RequestKey("principal", Principal)
AUDIT_DRAFT = web.RequestKey("audit_draft", AuditDraft)
WARNINGS = web.RequestKey("security_warnings", list[str])


def principal_of(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def sees(request: web.Request, tenant: str | None) -> bool:
    """Whether the caller may know that an object of ``tenant`` exists."""
    principal = principal_of(request)
    return principal is None or principal.sees(tenant)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
