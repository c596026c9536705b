"""Registry file validation: every problem at once, located, with a fix; no secret echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.model import to_document
from control_plane.problems import RegistryError
from control_plane.registry.loader import (
    integration_from_document,
    load_integrations_file,
    load_rate_limits,
    parse_duration,
    parse_integrations_text,
    validate_integration_document,
)

ROOT = Path(__file__).resolve().parents[3]
RULES = load_rate_limits(ROOT / "config" / "rate_limits.yaml")

BAD = """\
integrations:
  - id: mailer
    kind: smtp
    upstream: tcp://smtp.example.com:25
    listen_port: 70000
  - id: payments
    kind: stripe
    upstream: https://api.stripe.com
    credentials:
      api_key: sk_live_51HxDontPrintMe
"""


def _problems(text: str) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_integrations_text(text, "bad.yaml", RULES)
    return info.value


def test_example_file_is_valid_and_has_every_seed_kind() -> None:
    items = load_integrations_file(ROOT / "config" / "integrations.yaml", RULES)
    kinds = {i.kind for i in items}
    assert kinds == {"auth0", "postgresql", "redis", "stripe", "email", "storage", "http"}
    stripe = next(i for i in items if i.id == "stripe")
    assert stripe.upstream.host == "api.stripe.com"
    assert stripe.upstream.port == 443
    assert stripe.upstream.tls.enabled
    assert stripe.policies.rate_limit is not None
    assert stripe.policies.rate_limit.bucket.burst == 50
    assert "acme" in stripe.policies.rate_limit.per_tenant
    assert all(i.source == "declared" for i in items)


def test_all_three_problems_reported_with_lines() -> None:
    error = _problems(BAD)
    rendered = error.render()
    by_pointer = {p.pointer: p for p in error.problems}
    assert by_pointer["/integrations/0/kind"].line == 3
    assert "use one of" in by_pointer["/integrations/0/kind"].fix
    assert by_pointer["/integrations/0/listen_port"].line == 5
    assert "65535" in by_pointer["/integrations/0/listen_port"].fix
    secret = by_pointer["/integrations/1/credentials/api_key"]
    assert secret.line == 10
    assert "env:" in secret.fix and "file:" in secret.fix
    assert "sk_live_51HxDontPrintMe" not in rendered
    assert "bad.yaml:3:" in rendered


def test_duplicate_ids_and_ports_are_errors() -> None:
    text = """\
integrations:
  - {id: a, kind: http, upstream: "https://a.example.com", listen_port: 10010}
  - {id: a, kind: http, upstream: "https://b.example.com", listen_port: 10010}
"""
    error = _problems(text)
    messages = [p.message for p in error.problems]
    assert any("duplicate id 'a'" in m for m in messages)
    assert any("listen_port 10010 is already used" in m for m in messages)
    assert all(p.line == 3 for p in error.problems)


def test_yaml_syntax_error_is_located() -> None:
    error = _problems("integrations:\n  - id: a\n   kind: [\n")
    assert error.problems[0].line is not None
    assert "YAML" in error.problems[0].message


def test_unknown_field_and_rule_and_duration() -> None:
    text = """\
integrations:
  - id: api
    kind: http
    upstream: https://api.example.com
    colour: blue
    policies:
      timeout: soon
      rate_limit: {rule: nope}
"""
    error = _problems(text)
    pointers = {p.pointer: p for p in error.problems}
    assert pointers["/integrations/0/colour"].line == 5
    assert "allowed" in pointers["/integrations/0/colour"].fix
    assert pointers["/integrations/0/policies/timeout"].line == 7
    assert "10s" in pointers["/integrations/0/policies/timeout"].fix
    assert "stripe-default" in pointers["/integrations/0/policies/rate_limit/rule"].fix


def test_kind_specific_settings_and_credentials_are_checked() -> None:
    problems = validate_integration_document(
        {
            "id": "pay",
            "kind": "stripe",
            "upstream": "https://api.stripe.com",
            "credentials": {"token": "env:X"},
            "settings": {"colour": 1},
        }
    )
    pointers = {p.pointer for p in problems}
    assert "/credentials/token" in pointers
    assert "/settings/colour" in pointers


def test_tcp_kind_takes_no_upstream_tls_by_default_and_default_port() -> None:
    item = integration_from_document(
        {"id": "db", "kind": "postgresql", "upstream": {"host": "db.internal"}}, source="registered"
    )
    assert (item.upstream.host, item.upstream.port, item.upstream.tls.enabled) == (
        "db.internal",
        5432,
        False,
    )


def test_document_round_trip_is_stable() -> None:
    items = load_integrations_file(ROOT / "config" / "integrations.yaml", RULES)
    for item in items:
        doc = to_document(item, with_meta=False)
        assert validate_integration_document(doc, RULES) == []
        again = integration_from_document(doc, source="declared", rules=RULES)
        assert to_document(again, with_meta=False) == doc


@pytest.mark.parametrize(
    ("text", "seconds"), [("250ms", 0.25), ("10s", 10.0), ("2m", 120.0), ("1h", 3600.0), (3, 3.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_empty_file_is_an_empty_registry() -> None:
    assert parse_integrations_text("", "empty.yaml") == []
