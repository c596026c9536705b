"""Principals: roles ordered viewer < operator < admin, one tenant each, ``*`` global."""

from __future__ import annotations

import dataclasses

import pytest

from control_plane.security.principal import GLOBAL_TENANT, ROLES, Principal, role_rank


def _principal(role: str | None, tenant: str = "acme") -> Principal:
    return Principal(id=f"api_key:{role}-{tenant}", role=role, tenant=tenant, kind="api_key")


def test_roles_are_ordered_lowest_first() -> None:
    assert ROLES == ("viewer", "operator", "admin")
    assert [role_rank(r) for r in ROLES] == [1, 2, 3]


@pytest.mark.parametrize("role", [None, "", "root", "Admin", "ADMIN", " admin", "viewer,admin"])
def test_no_or_unknown_role_ranks_zero(role: str | None) -> None:
    assert role_rank(role) == 0


# holder -> the roles it holds (itself and every role below it)
HOLDS: dict[str | None, set[str]] = {
    None: set(),
    "viewer": {"viewer"},
    "operator": {"viewer", "operator"},
    "admin": {"viewer", "operator", "admin"},
    "superuser": set(),  # an unknown role holds nothing, not everything
}


@pytest.mark.parametrize("holder", list(HOLDS), ids=str)
@pytest.mark.parametrize("needed", ROLES)
def test_a_role_holds_itself_and_those_below(holder: str | None, needed: str) -> None:
    assert _principal(holder).has_role(needed) is (needed in HOLDS[holder])


@pytest.mark.parametrize("needed", ["", "superuser", "Admin"])
def test_no_principal_holds_an_unknown_role(needed: str) -> None:
    """A rule naming a role that does not exist can be met by nobody (fail closed)."""
    for holder in HOLDS:
        assert not _principal(holder).has_role(needed), holder


def test_a_tenant_principal_sees_only_its_tenant() -> None:
    acme = _principal("admin", "acme")
    assert not acme.is_global
    assert acme.sees("acme")
    assert not acme.sees("globex")
    assert not acme.sees("ACME"), "tenants compare exactly"
    assert not acme.sees(None), "an object without a tenant is not any tenant's"
    assert not acme.sees(GLOBAL_TENANT), "'*' on an object does not make it everyone's"


def test_the_global_tenant_sees_every_tenant() -> None:
    assert GLOBAL_TENANT == "*"
    anyone = _principal("viewer", GLOBAL_TENANT)
    assert anyone.is_global
    for tenant in ("acme", "globex", "default", GLOBAL_TENANT, None):
        assert anyone.sees(tenant), tenant


@pytest.mark.parametrize("tenant", ["", "**", " *", "all"])
def test_only_the_exact_star_is_global(tenant: str) -> None:
    principal = _principal("admin", tenant)
    assert not principal.is_global
    assert not principal.sees("acme")


def test_visibility_does_not_depend_on_role() -> None:
    for role in HOLDS:
        assert _principal(role, "acme").sees("acme")
        assert not _principal(role, "acme").sees("globex")
        assert _principal(role, GLOBAL_TENANT).sees("globex")


def test_a_principal_cannot_be_changed_after_authentication() -> None:
    viewer = _principal("viewer")
    with pytest.raises(dataclasses.FrozenInstanceError):
        viewer.role = "admin"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        viewer.tenant = GLOBAL_TENANT  # type: ignore[misc]
    assert (viewer.role, viewer.tenant) == ("viewer", "acme")
