"""The registry's JSON Schema: the fixed core and the settings/credentials each kind adds.

A valid document of every kind passes; typical mistakes fail with a problem located by
the JSON pointer of the offending value (or key), as ``schema_problems`` reports them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from adapters import ADAPTERS
from control_plane.model import KINDS
from control_plane.problems import Problem
from control_plane.registry.loader import validate_integration_document
from control_plane.registry.schema import file_schema, integration_schema, rate_limits_schema
from control_plane.registry.validation import schema_problems
from control_plane.registry.yamlmarks import MarkedDocument

ROOT = Path(__file__).resolve().parents[3]

# One valid document per kind, using every setting and credential slot the kind declares.
VALID: dict[str, dict[str, Any]] = {
    "auth0": {
        "id": "login",
        "kind": "auth0",
        "upstream": "https://acme.eu.auth0.com",
        "settings": {"audience": "https://api.acme.test", "token_path": "/oauth/token",
                     "scopes": ["read:users"]},
        "credentials": {"client_id": "env:AUTH0_CLIENT_ID",
                        "client_secret": "file:/run/secrets/auth0-secret"},
    },
    "email": {
        "id": "mailer",
        "kind": "email",
        "upstream": {"host": "smtp.example.com", "port": 587},
        "settings": {"transport": "http", "api_key_header": "Authorization",
                     "api_key_prefix": "Bearer ", "probe_path": "/v3/health"},
        "credentials": {"api_key": "env:EMAIL_SERVICE_API_KEY"},
    },
    "http": {
        "id": "weather",
        "kind": "http",
        "upstream": "https://api.weather.example.com",
        "settings": {"probe_path": "/status", "expected_status": 204,
                     "api_key_header": "X-Api-Key", "api_key_prefix": ""},
        "credentials": {"api_key": "env:WEATHER_API_KEY"},
    },
    "postgresql": {
        "id": "orders-db",
        "kind": "postgresql",
        "upstream": {"host": "db.internal", "port": 5432, "scheme": "tcp"},
        "settings": {"database": "orders", "user": "probe"},
        "credentials": {"password": "env:ORDERS_DB_PASSWORD"},
    },
    "redis": {
        "id": "cache",
        "kind": "redis",
        "upstream": "tls://cache.internal:6380",
        "settings": {"database": 15},
        "credentials": {"password": "file:/run/secrets/redis"},
    },
    "storage": {
        "id": "files",
        "kind": "storage",
        "upstream": "https://s3.eu-west-1.amazonaws.com",
        "settings": {"region": "eu-west-1", "bucket": "acme-files", "service": "s3"},
        "credentials": {"access_key_id": "env:STORAGE_SERVICE_ACCESS_KEY",
                        "secret_access_key": "env:STORAGE_SERVICE_SECRET_KEY"},
    },
    "stripe": {
        "id": "payments",
        "kind": "stripe",
        "upstream": "https://api.stripe.com",
        "settings": {"api_version": "2024-06-20"},
        "credentials": {"api_key": "env:STRIPE_SECRET_KEY",
                        "publishable_key": "env:STRIPE_PUBLISHABLE_KEY"},
    },
}  # fmt: skip

# Every optional block of the core schema at once.
EVERYTHING: dict[str, Any] = {
    "id": "a" * 63,
    "kind": "http",
    "tenant": "acme.eu_1-x",
    "description": "d" * 500,
    "enabled": False,
    "labels": {"team": "payments", "app.kubernetes.io/part-of": "checkout"},
    "upstream": {
        "url": "https://api.example.com:8443",
        "tls": {"enabled": True, "verify": True, "sni": "api.example.com",
                "ca_bundle": "file:/etc/ca.pem", "client_cert": "file:/etc/c.pem",
                "client_key": "env:CLIENT_KEY_PEM"},
        "discovery": "dns",
    },
    "listen_port": 65535,
    "credentials": {"api_key": "env:K"},
    "policies": {
        "timeout": "2.5s",
        "connect_timeout": 1,
        "retries": {"max_retries": 10, "per_try_timeout": "250ms", "retry_on": ["5xx"],
                    "retriable_status_codes": [429, 503], "retry_after_max": "1m"},
        "rate_limit": {"requests": 10, "per": "1h", "burst": 20, "tenant_header": "x-tenant",
                       "per_tenant": {"acme": {"requests": 1, "per": "1s", "burst": 1}}},
        "circuit_breaker": {"max_connections": 4_294_967_295, "max_pending_requests": 1,
                            "max_requests": 1, "max_retries": 0},
        "outlier_detection": {"enabled": True, "consecutive_5xx": 5,
                              "consecutive_gateway_failure": 3, "interval": "10s",
                              "base_ejection_time": "30s", "max_ejection_time": "5m",
                              "max_ejection_percent": 100},
        "cache": {"enabled": True, "max_entry_bytes": 1, "max_total_bytes": 1024},
    },
    "settings": {"probe_path": "/"},
    # read-only metadata a GET returns, accepted back on PUT
    "version": 3,
    "source": "registered",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": None,
}  # fmt: skip


def _problems(doc: Any, schema: Mapping[str, Any] | None = None) -> list[Problem]:
    return schema_problems(MarkedDocument(data=doc, file="<test>"), schema or integration_schema())


def _by_pointer(doc: Any) -> dict[str, Problem]:
    problems = _problems(doc)
    assert problems, "expected the document to be refused"
    return {p.pointer: p for p in problems}


def _with(example: str, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID[example])
    doc.update(changes)
    return doc


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    for schema in (integration_schema(), file_schema(), rate_limits_schema()):
        Draft202012Validator.check_schema(schema)
    for spec in ADAPTERS.values():
        Draft202012Validator.check_schema(spec.settings_schema)


def test_there_is_a_valid_example_for_every_kind() -> None:
    assert set(VALID) == set(KINDS) == set(ADAPTERS)
    assert integration_schema()["properties"]["kind"]["enum"] == list(KINDS)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_a_valid_document_of_each_kind_passes(kind: str) -> None:
    assert _problems(VALID[kind]) == []
    assert Draft202012Validator(integration_schema()).is_valid(VALID[kind])


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_minimal_document_of_each_kind_passes(kind: str) -> None:
    minimal = {"id": "x", "kind": kind, "upstream": VALID[kind]["upstream"]}
    assert _problems(minimal) == []


def test_every_optional_core_field_at_its_limits_passes() -> None:
    assert _problems(EVERYTHING) == []


def test_the_file_schema_holds_items_of_the_integration_schema() -> None:
    assert _problems({"integrations": list(VALID.values())}, file_schema()) == []
    assert _problems({"integrations": []}, file_schema()) == []
    pointers = {p.pointer for p in _problems({"integrations": [{"id": "x"}]}, file_schema())}
    assert pointers == {"/integrations/0"}, "missing kind and upstream"
    unknown = {p.pointer: p.message for p in _problems({"items": []}, file_schema())}
    assert unknown == {
        "": "missing required field(s): integrations",
        "/items": "unknown field(s): items",
    }


def test_the_repository_files_pass() -> None:
    integrations = yaml.safe_load((ROOT / "config" / "integrations.yaml").read_text())
    assert _problems(integrations, file_schema()) == []
    rules = yaml.safe_load((ROOT / "config" / "rate_limits.yaml").read_text())
    assert _problems(rules, rate_limits_schema()) == []


def test_an_unknown_kind_is_refused_with_the_kinds_to_choose_from() -> None:
    problem = _by_pointer(_with("stripe", kind="smtp"))["/kind"]
    assert "'smtp' is not allowed" in problem.message
    assert all(kind in problem.fix for kind in KINDS)


@pytest.mark.parametrize(
    ("doc", "pointer"),
    [
        (_with("http", listen_port=0), "/listen_port"),
        (_with("http", listen_port=65536), "/listen_port"),
        (_with("postgresql", upstream={"host": "db.internal", "port": 70000}), "/upstream/port"),
        (_with("postgresql", upstream={"host": "db.internal", "port": -1}), "/upstream/port"),
    ],
    ids=["listen-zero", "listen-too-big", "upstream-too-big", "upstream-negative"],
)
def test_ports_out_of_range(doc: dict[str, Any], pointer: str) -> None:
    problem = _by_pointer(doc)[pointer]
    assert problem.message.startswith("port ") and "out of range" in problem.message
    assert problem.fix == "use a value from 1 to 65535"


def test_a_port_must_be_an_integer() -> None:
    problem = _by_pointer(_with("http", listen_port="8080"))["/listen_port"]
    assert "wrong type" in problem.message and "integer" in problem.fix


@pytest.mark.parametrize(
    "value",
    ["sk_live_51HxDontPrintMe", "env:", "env:1ABC", "env:WITH-DASH", "file:relative/path",
     "file:/with space", "ENV:STRIPE_SECRET_KEY", " env:STRIPE_SECRET_KEY"],
)  # fmt: skip
def test_a_credential_is_a_reference_never_a_value(value: str) -> None:
    problem = _by_pointer(_with("stripe", credentials={"api_key": value}))["/credentials/api_key"]
    assert problem.message == "a literal secret is not allowed here"
    assert "env:" in problem.fix and "file:" in problem.fix
    assert value.strip() not in problem.message, "the value is never echoed"


@pytest.mark.parametrize("field", ["ca_bundle", "client_cert", "client_key"])
def test_tls_material_is_a_reference_too(field: str) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    doc = _with("http", upstream={"url": "https://api.example.com", "tls": {field: pem}})
    problem = _by_pointer(doc)[f"/upstream/tls/{field}"]
    assert problem.message == "a literal secret is not allowed here"
    assert "MIIEvQ" not in problem.render()


@pytest.mark.parametrize(
    ("doc", "pointer"),
    [
        (_with("http", colour="blue"), "/colour"),
        (_with("http", upstream={"url": "https://a.example.com", "proxy": "x"}), "/upstream/proxy"),
        (_with("http", policies={"timeout": "1s", "retry": {}}), "/policies/retry"),
        (_with("http", upstream={"url": "https://a.example.com", "tls": {"verfy": False}}),
         "/upstream/tls/verfy"),
    ],
    ids=["top-level", "upstream", "policies", "tls"],
)  # fmt: skip
def test_unknown_fields_are_refused_at_their_key(doc: dict[str, Any], pointer: str) -> None:
    problem = _by_pointer(doc)[pointer]
    assert problem.message == f"unknown field(s): {pointer.rsplit('/', 1)[1]}"
    assert "allowed:" in problem.fix


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_kind_refuses_unknown_settings(kind: str) -> None:
    doc = _with(kind, settings={**VALID[kind]["settings"], "no_such_setting": 1})
    problem = _by_pointer(doc)["/settings/no_such_setting"]
    assert problem.message == "unknown field(s): no_such_setting"
    for name in ADAPTERS[kind].settings_schema["properties"]:
        assert name in problem.fix, "the fix lists this kind's settings"


def test_settings_of_another_kind_are_refused() -> None:
    doc = _with("stripe", settings={"database": 0})  # a redis setting
    assert set(_by_pointer(doc)) == {"/settings/database"}
    assert _problems(_with("redis", settings={"database": 0})) == []


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_kind_accepts_only_its_credential_slots(kind: str) -> None:
    slots = sorted(ADAPTERS[kind].credentials)
    assert slots, "every seed kind declares at least one slot"
    assert _problems(_with(kind, credentials=dict.fromkeys(slots, "env:X"))) == []
    problem = _by_pointer(_with(kind, credentials={"token": "env:X"}))["/credentials/token"]
    assert problem.message == "unknown credential 'token' for this kind"
    assert problem.fix == f"use one of: {', '.join(slots)}"


MISTAKES: list[tuple[dict[str, Any], str, str]] = [
    ({"id": "x", "kind": "http"}, "", "missing required field(s): upstream"),
    (_with("http", id="Weather_API"), "/id", "'Weather_API' is not a valid id"),
    (_with("http", id="a" * 64), "/id", "is not a valid id"),
    (_with("http", id="-api"), "/id", "'-api' is not a valid id"),
    (_with("http", upstream="ftp://files.example.com"), "/upstream", "is not an upstream URL"),
    (_with("http", upstream={"port": 443}), "/upstream", "missing 'url' or 'host'"),
    (_with("http", policies={"timeout": "soon"}), "/policies/timeout", "is not a duration"),
    (_with("http", policies={"timeout": 0}), "/policies/timeout", "out of range"),
    (_with("http", tenant="a b"), "/tenant", "does not match the expected form"),
    (_with("http", labels={"bad key": "x"}), "/labels/bad key", "'bad key' is not allowed"),
    (_with("http", labels={"team": "x" * 64}), "/labels/team", "has the wrong length"),
    (_with("redis", settings={"database": 16}), "/settings/database", "out of range"),
    (_with("http", settings={"expected_status": 99}), "/settings/expected_status", "range"),
    (_with("http", settings={"probe_path": "health"}), "/settings/probe_path", "expected form"),
    (_with("email", settings={"transport": "pigeon"}), "/settings/transport", "not allowed"),
    (_with("auth0", settings={"scopes": "read"}), "/settings/scopes", "wrong type"),
    (_with("http", policies={"retries": {"max_retries": 11}}),
     "/policies/retries/max_retries", "out of range"),
    (_with("http", policies={"circuit_breaker": {"max_connections": 2**32}}),
     "/policies/circuit_breaker/max_connections", "out of range"),
    (_with("http", source="imported"), "/source", "not allowed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "pointer", "message"), MISTAKES, ids=[f"{p or '/'} {m}" for _, p, m in MISTAKES]
)
def test_typical_mistakes_are_located(doc: dict[str, Any], pointer: str, message: str) -> None:
    problems = _by_pointer(doc)
    assert pointer in problems, sorted(problems)
    assert message in problems[pointer].message


def test_every_problem_of_a_document_is_reported_at_once() -> None:
    doc = _with("stripe", id="Pay", listen_port=0, credentials={"api_key": "sk_live_x"})
    doc["policies"] = {"timeout": "soon"}
    assert set(_by_pointer(doc)) == {"/id", "/listen_port", "/credentials/api_key",
                                     "/policies/timeout"}  # fmt: skip


def test_a_key_with_a_slash_is_escaped_in_the_pointer() -> None:
    problems = _by_pointer(_with("http", labels={"app/team": "x" * 64}))
    assert "/labels/app~1team" in problems


def test_rate_limit_rules_file() -> None:
    def pointers(doc: Any) -> set[str]:
        return {p.pointer for p in _problems(doc, rate_limits_schema())}

    assert pointers({"rules": {"ok": {"requests": 1}}}) == set()
    assert pointers({"rules": {"Bad Name": {"requests": 1}}}) == {"/rules/Bad Name"}
    assert pointers({"rules": {"r": {"requests": 0}}}) == {"/rules/r/requests"}
    assert pointers({"rules": {"r": {"per": "1s"}}}) == {"/rules/r"}
    assert pointers({"rules": {"r": {"requests": 1, "per": "daily"}}}) == {"/rules/r/per"}
    assert pointers({}) == {""}


# --- Regression: `$` in the schema's patterns also matched before a trailing newline -----
#
# JSON Schema patterns are ECMA-262 regexes, where `$` (without the multiline flag) ends
# the input. jsonschema evaluates them with Python's `re.search`, where `$` also matches
# just before a final "\n", so every `^...$` pattern accepted "value\n" (an id "nl\n" was
# stored, a timeout "10s\n" answered 500). The patterns now end in `(?!\n)$`.


@pytest.mark.parametrize(
    ("changes", "pointer"),
    [
        ({"id": "payments\n"}, "/id"),
        ({"tenant": "acme\n"}, "/tenant"),
        ({"credentials": {"api_key": "env:STRIPE_SECRET_KEY\n"}}, "/credentials/api_key"),
        ({"policies": {"timeout": "10s\n"}}, "/policies/timeout"),
        ({"labels": {"team\n": "x"}}, "/labels/team\n"),
    ],
    ids=["id", "tenant", "credential", "duration", "label-name"],
)
def test_a_trailing_newline_is_refused(changes: dict[str, Any], pointer: str) -> None:
    assert pointer in _by_pointer(_with("stripe", **changes))


def test_a_duration_with_a_trailing_newline_is_a_problem_not_a_crash() -> None:
    """The schema lets "10s\\n" through, then the semantic check's parse_duration raises
    (POST /integrations answers 500)."""
    problems = validate_integration_document(_with("stripe", policies={"timeout": "10s\n"}))
    assert [p.pointer for p in problems] == ["/policies/timeout"]


# --- Regressions: the problems the schema's errors become (registry/validation.py) -------


def test_a_rate_limit_without_rule_or_requests_says_so() -> None:
    problem = _by_pointer(_with("http", policies={"rate_limit": {"per": "1s"}}))
    found = problem["/policies/rate_limit"]
    assert "url" not in found.message + found.fix
    assert "rule" in found.message + found.fix and "requests" in found.message + found.fix


def test_the_fix_for_a_zero_duration_offers_a_value_that_passes() -> None:
    fix = _by_pointer(_with("http", policies={"timeout": 0}))["/policies/timeout"].fix
    match = re.search(r"from (\S+) to", fix)
    if match is not None:
        lowest = float(match.group(1))
        assert _problems(_with("http", policies={"timeout": lowest})) == [], fix
