"""Every endpoint x {no credentials, viewer, operator, admin, other tenant}.

The routes come from the app's router, and the expectations below are written
independently of ``control_plane.security.authz``: a new endpoint fails this test until it
is classified in both places.
"""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.security.authz import MATRIX
from tests.integration.test_security.conftest import ADMIN, MakeSecure, Secure, weather_doc

ONE = "/integrations/{integration_id}"

# Minimum role per route ("public": no credentials needed).
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/health/live"): "public",
    ("GET", "/health/ready"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/integrations"): "viewer",
    ("POST", "/integrations"): "admin",
    ("GET", ONE): "viewer",
    ("PUT", ONE): "admin",
    ("DELETE", ONE): "admin",
    ("GET", ONE + "/status"): "viewer",
    ("GET", ONE + "/health"): "viewer",
    ("POST", ONE + "/test"): "operator",
    ("GET", ONE + "/rate-limit"): "viewer",
    ("GET", ONE + "/cache"): "viewer",
    ("POST", ONE + "/cache/clear"): "operator",
    ("GET", ONE + "/circuit-breaker"): "viewer",
    ("POST", ONE + "/circuit-breaker/reset"): "operator",
    ("GET", "/api-keys"): "admin",
    ("POST", "/api-keys"): "admin",
    ("DELETE", "/api-keys/{key_id}"): "admin",
    ("GET", "/audit"): "admin",
    ("GET", "/ui"): "public",
    ("GET", "/ui/static/{name}"): "public",
    ("GET", "/ui/fragments/overview"): "viewer",
    ("GET", "/ui/fragments/integrations/{integration_id}"): "viewer",
    ("GET", "/ui/stream"): "viewer",
}
RANK = {"public": 0, "viewer": 1, "operator": 2, "admin": 3}
# "other" is an admin of tenant globex; weather belongs to acme.
CALLERS = ("none", "viewer", "operator", "other", "admin")
DENIED = {401, 403, 429}


def _routes(app: Any) -> set[tuple[str, str]]:
    found = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    return {(m, p) for m, p in found if not (m == "HEAD" and ("GET", p) in found)}


async def test_every_route_is_classified(secure: Secure) -> None:
    routes = _routes(secure.client.app)
    assert routes == set(EXPECTED), "classify new routes here and in security/authz.py"
    assert set(MATRIX) == routes


def _expected(route: tuple[str, str], caller: str) -> int | None:
    """An exact status, or None for "allowed" (any status but 401/403/404/429)."""
    method, path = route
    need = EXPECTED[route]
    if need == "public":
        return None
    if caller == "none":
        return 401
    role = "admin" if caller == "other" else caller
    if RANK[role] < RANK[need]:
        return 403
    if caller == "other":
        if "{integration_id}" in path or path == "/api-keys/{key_id}":
            return 404  # another tenant's object does not exist for globex
        if method == "POST":
            return 403  # writing into tenant acme with globex credentials
    return None


async def _call(s: Secure, route: tuple[str, str], caller: str, n: int) -> tuple[int, str]:
    method, template = route
    path = template.replace("{integration_id}", "weather").replace("{name}", "app.js")
    body: dict[str, Any] | None = None
    if "{key_id}" in template:
        victim = await s.new_key(f"victim-{n}", "viewer", "acme")
        assert victim
        path = template.replace("{key_id}", s.ids[f"victim-{n}"])
    if route == ("POST", "/integrations"):
        body = weather_doc(f"new-{n}")
    elif route == ("PUT", ONE):
        body = weather_doc(description=f"edit {n}")
    elif route == ("POST", "/api-keys"):
        body = {"name": f"k{n}", "role": "viewer", "tenant": "acme"}
    response = await s.client.request(method, path, json=body, headers=s.as_(caller))
    if route == ("GET", "/ui/stream") and response.status == 200:
        response.close()  # an endless event stream: its status is the answer
        return response.status, ""
    return response.status, await response.text()


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
async def test_route_by_caller(make_secure: MakeSecure, route: tuple[str, str]) -> None:
    s = await make_secure()
    for role in ("viewer", "operator", "admin"):
        await s.new_key(role, role, "acme")
    await s.new_key("other", "admin", "globex")
    assert (await s.client.post("/integrations", json=weather_doc(), headers=ADMIN)).status == 201
    # The one allowed destructive call (admin) goes last.
    for n, caller in enumerate(CALLERS):
        status, text = await _call(s, route, caller, n)
        expected = _expected(route, caller)
        if expected is None:
            assert status not in DENIED | {404}, (route, caller, status, text)
        else:
            assert status == expected, (route, caller, status, text)
        if status in (401, 403, 404):
            assert text.startswith("{") and '"status"' in text, "problem+json"


async def test_other_tenant_lists_nothing_of_acme(secure: Secure) -> None:
    listing = await secure.client.get("/integrations", headers=secure.as_("other"))
    ids = [i["id"] for i in (await listing.json())["items"]]
    assert "weather" not in ids
    acme = await secure.client.get("/integrations", headers=secure.as_("viewer"))
    assert [i["id"] for i in (await acme.json())["items"]] == ["weather"]
    global_view = await secure.client.get("/integrations", headers=ADMIN)
    assert "weather" in [i["id"] for i in (await global_view.json())["items"]]
    # 404 for another tenant's id reads exactly like an id that does not exist
    hidden = await secure.client.get("/integrations/weather", headers=secure.as_("other"))
    missing = await secure.client.get("/integrations/nope", headers=secure.as_("other"))
    assert hidden.status == missing.status == 404
    assert (await hidden.json())["detail"] == "no integration 'weather'"
    assert (await missing.json())["detail"] == "no integration 'nope'"


async def test_tenant_admin_creates_in_own_tenant_by_default(secure: Secure) -> None:
    doc = weather_doc("mine")
    del doc["tenant"]
    created = await secure.client.post("/integrations", json=doc, headers=secure.as_("admin"))
    assert created.status == 201, await created.text()
    assert (await created.json())["tenant"] == "acme"
    moved = await secure.client.put(
        "/integrations/mine", json=weather_doc("mine", tenant="globex"), headers=secure.as_("admin")
    )
    assert moved.status == 403
