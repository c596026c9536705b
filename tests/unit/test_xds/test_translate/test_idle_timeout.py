"""TCP idle timeout is a policy with a default per kind (regression: it was fixed at 3600 s
for every TCP kind, so a silent Redis Pub/Sub subscriber was cut after an hour)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]

from control_plane.model import to_document
from control_plane.registry.loader import integration_from_document, validate_integration_document
from control_plane.xds.resources import LISTENER
from control_plane.xds.translate import TranslateOptions, translate


def _idle(doc: dict[str, Any]) -> str:
    item = integration_from_document(doc, source="registered")
    item = item.replace(listen_port=15000)
    listener = translate([item], {}, TranslateOptions()).resources[LISTENER][item.id]
    data = json_format.MessageToDict(listener)
    proxy = data["filterChains"][0]["filters"][0]["typedConfig"]
    assert proxy["@type"].endswith("TcpProxy")
    return str(proxy.get("idleTimeout", "0s"))


def _doc(kind: str, **policies: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "db", "kind": kind, "upstream": "tcp://db.example.com:5432"}
    if kind == "email":
        doc["settings"] = {"transport": "smtp"}
        doc["upstream"] = "tcp://smtp.example.com:25"
    if policies:
        doc["policies"] = policies
    return doc


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("postgresql", "3600s"), ("redis", "0s"), ("email", "300s")],
)
def test_each_tcp_kind_has_its_default(kind: str, expected: str) -> None:
    assert _idle(_doc(kind)) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("2h", "7200s"), ("90s", "90s"), (45, "45s"), ("never", "0s")]
)
def test_the_policy_overrides_the_default(value: Any, expected: str) -> None:
    doc = _doc("postgresql", idle_timeout=value)
    assert validate_integration_document(doc) == []
    assert _idle(doc) == expected
    item = integration_from_document(doc, source="registered")
    again = to_document(item)["policies"]["idle_timeout"]  # round-trips through the store
    assert _idle(_doc("postgresql", idle_timeout=again)) == expected


def test_refused_for_http_kinds_and_bad_values() -> None:
    doc = {
        "id": "api",
        "kind": "http",
        "upstream": "https://api.example.com",
        "policies": {"idle_timeout": "10m"},
    }
    problems = validate_integration_document(doc)
    assert [p.pointer for p in problems] == ["/policies/idle_timeout"]
    assert "TCP kinds" in problems[0].message
    bad = validate_integration_document(_doc("postgresql", idle_timeout="sometimes"))
    assert [p.pointer for p in bad] == ["/policies/idle_timeout"]
