"""The security middleware: authenticate, rate-limit, authorize, scope to the tenant,
then audit what succeeded.

It runs innermost (after request-id correlation and the error mapper), so its log lines
carry the request id and the handler's domain errors are already responses when the
audit decision is taken. Credentials are never logged: failures log the reason only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from control_plane.api.caller import AUDIT_DRAFT, PRINCIPAL, WARNINGS
from control_plane.api.problems import problem_response
from control_plane.keys import REGISTRY, SECURITY, STORE
from control_plane.model import Integration, to_document
from control_plane.observability.logging import REQUEST_ID
from control_plane.security import audit
from control_plane.security.api_keys import AuthError
from control_plane.security.authz import Rule, rule_for
from control_plane.security.context import SecurityContext, SecurityProblem
from control_plane.security.principal import GLOBAL_TENANT, Principal
from control_plane.security.ratelimit import RateLimiter

__all__ = ["ANONYMOUS", "security_middleware"]

log = logging.getLogger("control_plane.security")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ANONYMOUS = Principal("anonymous", "admin", GLOBAL_TENANT, "anonymous")
WARNING_HEADER = "X-Integration-Service-Warning"
_CHALLENGE = 'Bearer realm="integration-service"'


def _problem(exc: SecurityProblem) -> web.Response:
    extensions = dict(exc.extensions)
    type_ = str(extensions.pop("type_", "about:blank"))
    headers = extensions.pop("headers", None)
    return problem_response(exc.status, exc.detail, type_=type_, headers=headers, **extensions)


def _unauthorized(detail: str, *, invalid: bool) -> web.Response:
    challenge = _CHALLENGE + (', error="invalid_token"' if invalid else "")
    return problem_response(401, detail, headers={"WWW-Authenticate": challenge})


def _credential(request: web.Request) -> tuple[str, str] | None:
    """("key"|"bearer", value) from X-API-Key or Authorization: Bearer."""
    if key := request.headers.get("X-API-Key", "").strip():
        return "key", key
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return "bearer", value.strip()
    if scheme:
        raise AuthError("unsupported Authorization scheme; use Bearer")
    return None


async def _authenticate(request: web.Request, security: SecurityContext) -> Principal | None:
    found = _credential(request)
    if found is None:
        return None
    kind, value = found
    looks_like_jwt = value.count(".") == 2 and not value.startswith("isk_")
    if kind == "bearer" and looks_like_jwt:
        if security.jwt is None:
            raise AuthError("JWT bearer tokens are not accepted: no issuer is configured")
        return await security.jwt.verify(value)
    return await security.api_keys.authenticate(value)


def _integration(request: web.Request) -> Integration | None:
    ident = request.match_info.get("integration_id")
    return None if ident is None else request.app[REGISTRY].view.get(ident)


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    security = request.app.get(SECURITY)
    route = request.match_info.route.resource
    if security is None or route is None or request.match_info.http_exception is not None:
        return await handler(request)  # unmatched: the router's 404/405
    rule = rule_for(request.method, route.canonical, metrics_auth=security.metrics_auth)
    if rule.public:
        return await handler(request)
    principal = ANONYMOUS
    if security.enabled:
        try:
            found = await _authenticate(request, security)
        except AuthError as exc:
            log.warning("authentication failed", extra={"reason": str(exc), "path": request.path})
            return _unauthorized(f"credentials rejected: {exc}", invalid=True)
        if found is None:
            return _unauthorized(
                "credentials required: send 'Authorization: Bearer <API key or JWT>'",
                invalid=False,
            )
        principal = found
        wait = await security.limiter.acquire(principal.id)
        if wait is not None:
            return problem_response(
                429,
                f"rate limit of the management API exceeded for {principal.id}",
                headers={"Retry-After": RateLimiter.retry_after_header(wait)},
            )
    request[PRINCIPAL] = principal
    assert rule.role is not None
    if not principal.has_role(rule.role):
        return problem_response(
            403,
            f"{principal.id} (role {principal.role or 'none'}) may not do this; "
            f"it needs the {rule.role} role",
        )
    item = _integration(request)
    if item is not None and not principal.sees(item.tenant):
        return problem_response(404, f"no integration {item.id!r}")  # same as a missing id
    try:
        response = await handler(request)
    except SecurityProblem as exc:
        return _problem(exc)
    if warnings := request.get(WARNINGS):
        response.headers[WARNING_HEADER] = "; ".join(warnings)
    if rule.action is not None and response.status < 400:
        await _audit(request, principal, rule, item, response)
    return response


async def _audit(
    request: web.Request,
    principal: Principal,
    rule: Rule,
    before: Integration | None,
    response: web.StreamResponse,
) -> None:
    assert rule.action is not None
    draft = request.get(AUDIT_DRAFT)
    fields: dict[str, Any]
    if draft is not None:
        fields = {
            "target": draft.target,
            "tenant": draft.tenant,
            "before": draft.before,
            "after": draft.after,
        }
    else:
        ident = before.id if before is not None else response.headers.get("Location", "/")
        ident = ident.rsplit("/", 1)[-1]
        after = request.app[REGISTRY].view.get(ident)
        changes = rule.action in ("integration.create", "integration.update", "integration.delete")
        subject = after or before
        fields = {
            "target": f"integration/{ident}",
            "tenant": subject.tenant if subject else None,
            "before": to_document(before) if changes and before else None,
            "after": to_document(after) if changes and after else None,
        }
    await audit.record(
        request.app[STORE],
        principal,
        action=rule.action,
        request_id=REQUEST_ID.get(),
        **fields,
    )
