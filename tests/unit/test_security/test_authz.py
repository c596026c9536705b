"""The permission matrix: the minimum role and the audited action of every route, and the
fail-closed rule for anything it does not name.

The expectations are written out here, independently of the module, from the table in its
docstring (and docs/security.md); a role is allowed a route when the rule is public or the
principal holds the rule's role (``Principal.has_role``, as the auth middleware checks it).
"""

from __future__ import annotations

import pytest

from control_plane.security.authz import MATRIX, PUBLIC, Rule, rule_for
from control_plane.security.principal import GLOBAL_TENANT, Principal

ONE = "/integrations/{integration_id}"

# (method, route template) -> (minimum role or None for public, audited action or None)
EXPECTED: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("GET", "/health"): (None, None),
    ("GET", "/health/live"): (None, None),
    ("GET", "/health/ready"): (None, None),
    ("GET", "/openapi.json"): (None, None),
    ("GET", "/metrics"): (None, None),
    ("GET", "/integrations"): ("viewer", None),
    ("POST", "/integrations"): ("admin", "integration.create"),
    ("GET", ONE): ("viewer", None),
    ("PUT", ONE): ("admin", "integration.update"),
    ("DELETE", ONE): ("admin", "integration.delete"),
    ("GET", ONE + "/status"): ("viewer", None),
    ("GET", ONE + "/health"): ("viewer", None),
    ("POST", ONE + "/test"): ("operator", "integration.test"),
    ("GET", ONE + "/rate-limit"): ("viewer", None),
    ("GET", ONE + "/cache"): ("viewer", None),
    ("POST", ONE + "/cache/clear"): ("operator", "integration.cache_clear"),
    ("GET", ONE + "/circuit-breaker"): ("viewer", None),
    ("POST", ONE + "/circuit-breaker/reset"): ("operator", "integration.breaker_reset"),
    ("GET", "/api-keys"): ("admin", None),
    ("POST", "/api-keys"): ("admin", "api_key.create"),
    ("DELETE", "/api-keys/{key_id}"): ("admin", "api_key.revoke"),
    ("GET", "/audit"): ("admin", None),
    ("GET", "/ui"): (None, None),
    ("GET", "/ui/static/{name}"): (None, None),
    ("GET", "/ui/fragments/overview"): ("viewer", None),
    ("GET", "/ui/fragments/integrations/{integration_id}"): ("viewer", None),
    ("GET", "/ui/stream"): ("viewer", None),
}
RANK = {None: 0, "viewer": 1, "operator": 2, "admin": 3}
CALLERS: tuple[str | None, ...] = (None, "viewer", "operator", "admin")


def _allowed(rule: Rule, role: str | None, tenant: str = "acme") -> bool:
    principal = Principal(id="api_key:k", role=role, tenant=tenant, kind="api_key")
    return rule.public or (rule.role is not None and principal.has_role(rule.role))


def test_the_matrix_names_every_route_with_its_role_and_action() -> None:
    assert {route: (rule.role, rule.action) for route, rule in MATRIX.items()} == EXPECTED


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("caller", CALLERS, ids=str)
def test_role_by_route(route: tuple[str, str], caller: str | None) -> None:
    needed, _ = EXPECTED[route]
    rule = rule_for(*route)
    assert _allowed(rule, caller) is (RANK[caller] >= RANK[needed])


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
def test_the_tenant_does_not_change_what_a_role_may_call(route: tuple[str, str]) -> None:
    """Tenancy is orthogonal: it hides objects (404), it grants and removes no route."""
    rule = rule_for(*route)
    for caller in CALLERS:
        by_tenant = {_allowed(rule, caller, t) for t in ("acme", "globex", GLOBAL_TENANT)}
        assert len(by_tenant) == 1, (route, caller)


def test_writes_are_audited_and_reads_are_not() -> None:
    for (method, template), rule in MATRIX.items():
        if method == "GET":
            assert rule.action is None, template
        else:
            assert rule.action is not None, (method, template)
            assert not rule.public, (method, template)
    actions = [rule.action for rule in MATRIX.values() if rule.action]
    assert len(actions) == len(set(actions)), "one action names one operation"
    assert {a.split(".")[0] for a in actions} == {"integration", "api_key"}


def test_public_rules_need_no_role() -> None:
    assert PUBLIC.public and PUBLIC.role is None and PUBLIC.action is None
    assert not Rule("viewer").public
    public = {route for route, rule in MATRIX.items() if rule.public}
    assert public == {route for route, (role, _) in EXPECTED.items() if role is None}
    # The status page's shell and assets are public: they hold no data (its fragments and
    # stream are viewer routes).
    shell = {("GET", "/ui"), ("GET", "/ui/static/{name}")}
    assert all(path.startswith(("/health", "/openapi", "/metrics")) for _, path in public - shell)


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
def test_head_is_get(route: tuple[str, str]) -> None:
    method, template = route
    if method == "GET":
        assert rule_for("HEAD", template) == rule_for("GET", template)


def test_metrics_need_a_viewer_when_metrics_auth_is_set() -> None:
    assert rule_for("GET", "/metrics").public
    guarded = rule_for("GET", "/metrics", metrics_auth=True)
    assert (guarded.role, guarded.action) == ("viewer", None)
    assert rule_for("HEAD", "/metrics", metrics_auth=True) == guarded
    for route in EXPECTED:
        if route != ("GET", "/metrics"):
            assert rule_for(*route, metrics_auth=True) == rule_for(*route), route


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/nope"),
        ("GET", "/integrations/stripe"),  # a concrete path, not the route template
        ("GET", "/integrations/"),
        ("GET", "/health/"),
        ("GET", ""),
        ("PATCH", ONE),
        ("POST", "/health"),
        ("DELETE", "/integrations"),
        ("PUT", "/api-keys/{key_id}"),
        ("OPTIONS", "/integrations"),
        ("get", "/health"),  # methods are upper-case (aiohttp's request.method)
        ("POST", "/metrics"),
    ],
)
def test_unknown_routes_and_methods_need_admin_and_are_not_audited(
    method: str, template: str
) -> None:
    rule = rule_for(method, template)
    assert rule == Rule("admin")
    assert not rule.public
    assert rule.action is None
    assert [c for c in CALLERS if _allowed(rule, c)] == ["admin"]
