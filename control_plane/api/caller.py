"""Who is calling: the authenticated principal of a request and what it may see.

Set by the auth middleware (``control_plane.api.auth``); read by handlers.
"""

from __future__ import annotations

from aiohttp import web

from control_plane.security.context import AuditDraft
from control_plane.security.principal import Principal

__all__ = ["AUDIT_DRAFT", "AUTH_HEADER", "PRINCIPAL", "WARNINGS", "principal_of", "sees"]

AUTH_HEADER = "X-Integration-Service-Auth"

PRINCIPAL = web.RequestKey("principal", Principal)
AUDIT_DRAFT = web.RequestKey("audit_draft", AuditDraft)
WARNINGS = web.RequestKey("security_warnings", list[str])


def principal_of(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def sees(request: web.Request, tenant: str | None) -> bool:
    """Whether the caller may know that an object of ``tenant`` exists."""
    principal = principal_of(request)
    return principal is None or principal.sees(tenant)
