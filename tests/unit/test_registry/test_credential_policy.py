"""The credential policy: grants, reserved references and file roots (issue 15)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pytest

from control_plane.model import Integration
from control_plane.problems import RegistryError
from control_plane.registry.credential_policy import CredentialPolicy, Grant, host_matches
from control_plane.registry.grants import GrantsFile, load_grants
from control_plane.registry.loader import integration_from_document

GRANT = Grant("env:WEATHER_KEY", frozenset({"acme"}), ("api.weather.example.com", "*.corp.io"))


def _item(
    ref: str,
    upstream: str = "https://api.weather.example.com",
    tenant: str = "acme",
    source: Literal["registered", "declared"] = "registered",
) -> Integration:
    doc = {
        "id": "w",
        "kind": "http",
        "tenant": tenant,
        "upstream": upstream,
        "credentials": {"api_key": ref},
    }
    return integration_from_document(doc, source=source)


def _rules(policy: CredentialPolicy, item: Integration) -> list[str | None]:
    return [p.rule for p in policy.problems(item)]


def test_host_patterns() -> None:
    assert host_matches("api.stripe.com", "API.Stripe.com.")
    assert not host_matches("api.stripe.com", "api.stripe.com.evil.io")
    assert host_matches("*.corp.io", "billing.corp.io")
    assert host_matches("*.corp.io", "a.b.corp.io")
    assert not host_matches("*.corp.io", "corp.io")  # the apex is not below itself
    assert not host_matches("*.corp.io", "evilcorp.io")


def test_grants_bind_tenants_and_hosts() -> None:
    policy = CredentialPolicy(grants={GRANT.ref: GRANT})
    assert _rules(policy, _item("env:WEATHER_KEY")) == []
    assert _rules(policy, _item("env:WEATHER_KEY", "https://x.corp.io")) == []
    assert _rules(policy, _item("env:WEATHER_KEY", tenant="globex")) == ["not-granted"]
    assert _rules(policy, _item("env:WEATHER_KEY", "https://evil.io")) == ["destination"]
    assert _rules(policy, _item("env:OTHER_KEY")) == ["not-granted"]
    # Declared: no grant needed; a grant's binding holds when there is one.
    assert _rules(policy, _item("env:OTHER_KEY", source="declared")) == []
    declared = _item("env:WEATHER_KEY", "https://evil.io", source="declared")
    assert _rules(policy, declared) == ["destination"]


@pytest.mark.parametrize(
    "ref",
    ["env:POSTGRESQL_URL", "env:REDIS_URL", "env:INTEGRATION_SERVICE_ADMIN_KEY",
     "env:INTEGRATION_SERVICE_FUTURE_SECRET", "env:CONSUL_HTTP_TOKEN", "env:ADMIN_SOURCE"],
)  # fmt: skip
def test_the_services_own_references_are_reserved_whoever_asks(ref: str) -> None:
    grant = Grant(ref, frozenset({"*"}), ("api.weather.example.com",))
    policy = CredentialPolicy(grants={ref: grant}, reserved=frozenset({"env:ADMIN_SOURCE"}))
    assert _rules(policy, _item(ref)) == ["reserved"]  # a grant cannot unlock it
    assert _rules(policy, _item(ref, source="declared")) == ["reserved"]


def test_file_roots(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    root.mkdir()
    (root / "key").write_text("x")
    (root / "dir").mkdir()
    outside = tmp_path / "outside"
    outside.write_text("x")
    (root / "out-link").symlink_to(outside)
    (root / "in-link").symlink_to(root / "key")
    (root / "proc-link").symlink_to("/proc/self/environ")
    os.mkfifo(root / "fifo")
    policy = CredentialPolicy(file_roots=(root,))
    assert policy.file_refusal(str(root / "key")) is None
    assert policy.file_refusal(str(root / "in-link")) is None
    assert policy.file_refusal(str(root / "not-yet-mounted")) is None
    refused = {
        "relative": "secrets/key",
        "traversal": f"{root}/../outside",
        "outside": str(outside),
        "symlink out": str(root / "out-link"),
        "proc": str(root / "proc-link"),
        "directory": str(root / "dir"),
        "fifo": str(root / "fifo"),
        "system": "/etc/hostname",
    }
    for what, path in refused.items():
        assert policy.file_refusal(path) is not None, what
    assert CredentialPolicy().file_refusal(str(root / "key")) == "no file_roots are configured"


def test_grants_file_reports_every_problem_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "grants.yaml"
    path.write_text(
        "grants:\n"
        "  - {ref: env:A, tenants: [acme], hosts: [api.a.com]}\n"
        "  - {ref: env:A, tenants: [acme], hosts: [api.b.com]}\n"
        "  - {ref: 'sk_live_literal', tenants: [], hosts: ['*']}\n"
    )
    with pytest.raises(RegistryError) as info:
        load_grants(path)
    lines = {p.line for p in info.value.problems}
    assert 4 in lines  # the literal ref, empty tenants and the bare "*" host
    assert all(p.file == str(path) for p in info.value.problems)
    path.write_text("grants:\n  - {ref: env:A, tenants: [acme], hosts: [api.a.com]}\n"
                    "  - {ref: env:A, tenants: [b], hosts: [api.b.com]}\n")  # fmt: skip
    with pytest.raises(RegistryError, match="granted twice"):
        load_grants(path)
    assert load_grants(tmp_path / "missing.yaml") == {}


def test_a_bad_reload_keeps_the_last_good_grants(tmp_path: Path) -> None:
    path = tmp_path / "grants.yaml"
    path.write_text("grants:\n  - {ref: env:A, tenants: [acme], hosts: [api.a.com]}\n")
    grants = GrantsFile(path, CredentialPolicy())
    grants.load()
    assert set(grants.policy.grants) == {"env:A"}
    path.write_text("grants: [{ref: 1}]\n")
    assert grants.reload() is False and grants.error is not None
    assert set(grants.policy.grants) == {"env:A"}
    path.write_text("grants: []\n")
    assert grants.reload() is True and grants.policy.grants == {}


def test_the_admin_key_file_is_reserved_in_every_spelling(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    root.mkdir()
    key = root / "admin-api-key"
    key.write_text("isk_admin")
    (root / "alias").symlink_to(key)
    grant_all = {
        f"file:{p}": Grant(f"file:{p}", frozenset({"*"}), ("api.weather.example.com",))
        for p in (key, f"{root}//admin-api-key", f"{root}/./admin-api-key", root / "alias")
    }
    policy = CredentialPolicy(
        grants=grant_all, file_roots=(root,), reserved=frozenset({f"file:{key}"})
    )
    for ref in grant_all:
        assert _rules(policy, _item(ref)) == ["reserved"], ref
