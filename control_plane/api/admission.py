"""Admission of integration documents from the API: tenant scope, validation (the
registry parses the document, once) and the SSRF guard on the parsed upstream.

Called by the create and update handlers before anything is stored, so a refusal leaves
the registry, the store and the outbox untouched. Integrations declared in the file are
operator-owned and not checked here (the operator is trusted with their own network).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from control_plane.api.caller import WARNINGS, principal_of
from control_plane.keys import FLEET, REGISTRY, SECURITY
from control_plane.model import Integration
from control_plane.problems import Problem, RegistryError
from control_plane.registry.credential_policy import raw_upstream
from control_plane.registry.token_mode import token_grant
from control_plane.security.context import SecurityProblem
from control_plane.security.ssrf import ALLOWED_SCHEMES, SsrfRefused

__all__ = ["admit_integration"]

SSRF_PROBLEM = "https://integration-service.dev/problems/ssrf"


async def admit_integration(
    request: web.Request, document: Mapping[str, Any], *, current: Integration | None = None
) -> Integration:
    """The integration to store (tenant filled in for tenant-scoped callers), built from
    ``document`` once; ``current`` is the one an update replaces (its id is kept).

    Raises :class:`SecurityProblem`: 403 for another tenant, 422 naming the SSRF rule
    when that is the only refusal; :class:`RegistryError` with every problem otherwise —
    the schema's, the ports', the credential policy's (grants, reserved references, file
    roots) and the SSRF guard's together (an update of a declared integration:
    :class:`DeclaredConflict` first).
    """
    out = dict(document)
    principal = principal_of(request)
    if principal is not None and not principal.is_global:
        tenant = out.setdefault("tenant", current.tenant if current else principal.tenant)
        if tenant != principal.tenant:
            raise SecurityProblem(
                403,
                f"your credentials are scoped to tenant {principal.tenant!r}; "
                f"integrations of tenant {tenant!r} cannot be written with them",
            )
    _check_scheme(out.get("upstream"))
    item, problems = request.app[REGISTRY].check(out, replacing=current.id if current else None)
    if item is not None:
        problems = [*problems, *_workload_problems(request, item)]
    security = request.app.get(SECURITY)
    refused: tuple[str, SsrfRefused] | None = None
    target = (
        (item.upstream.scheme, item.upstream.host, item.upstream.port)
        if item is not None
        else raw_upstream(out.get("upstream"))  # an invalid document: judged all the same
    )
    # The token endpoint of token mode receives the client secret: the same rules.
    targets = [("/upstream", target)]
    grant = token_grant(item) if item is not None else None
    if item is not None and grant is not None and grant.token_host != item.upstream.host.lower():
        pointer = "/settings/token/token_url" if item.kind == "http" else "/upstream"
        targets.append((pointer, (grant.token_scheme, grant.token_host, grant.token_port)))
    for pointer, checked in targets:
        if security is None or checked is None or refused is not None:
            continue
        try:
            warnings = await security.guard.check(*checked)
        except SsrfRefused as refusal:
            refused = (pointer, refusal)
        else:
            if warnings:
                request.setdefault(WARNINGS, []).extend(warnings)
    if refused is not None:
        # The SSRF problem type (its rule on top, as clients expect), with every other
        # refusal of the document beside it in ``errors``: schema, ports, grants.
        where, why = refused
        fix = "choose an allowed upstream" if where == "/upstream" else "choose another token_url"
        ssrf = Problem(where, why.detail, fix, rule=why.rule)
        others = f"; and {len(problems)} more problem(s), see errors" if problems else ""
        raise SecurityProblem(
            422,
            why.detail + others,
            type_=SSRF_PROBLEM,
            rule=why.rule,
            pointer=where,
            errors=[p.as_dict() for p in [ssrf, *problems]],
        )
    if problems or item is None:
        raise RegistryError(problems, "invalid integration")
    return item


def _workload_problems(request: web.Request, item: Integration) -> list[Problem]:
    """Shared topology: ``workloads`` may name only declared workloads of its tenant.

    (The snapshot cut enforces the tenant regardless; this refuses the mistake before it
    is stored, naming the workloads that would run it.)"""
    fleet = request.app.get(FLEET)
    if fleet is None or not item.workloads:
        return []
    own = {w.name: w for w in fleet.workloads() if w.tenant == item.tenant}
    problems = []
    for index, name in enumerate(item.workloads):
        if name in own:
            continue
        known = ", ".join(sorted(own)) or "none declared"
        problems.append(
            Problem(
                f"/workloads/{index}",
                f"{name!r} is not a workload of tenant {item.tenant!r}",
                f"name one of its workloads ({known}) or declare it in the workloads file",
            )
        )
    return problems


def _check_scheme(upstream: Any) -> None:
    """Refuse a foreign scheme by name (before the schema reports it as a mere mismatch)."""
    body = {"url": upstream} if isinstance(upstream, str) else upstream
    if not isinstance(body, Mapping):
        return
    schemes = [body.get("scheme")]
    if isinstance(body.get("url"), str) and "://" in body["url"]:
        # The scheme is what precedes "://"; urlsplit would also judge the rest (and raise
        # on a malformed IPv6 literal, which the schema reports).
        schemes.append(body["url"].split("://", 1)[0].lower())
    for scheme in schemes:
        if isinstance(scheme, str) and scheme not in ALLOWED_SCHEMES:
            raise SecurityProblem(
                422,
                f"upstream scheme {scheme!r} is not allowed (use http, https, tcp or tls)",
                type_=SSRF_PROBLEM,
                rule="scheme",
                pointer="/upstream",
            )
