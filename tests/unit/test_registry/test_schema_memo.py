"""The memoizing validator (``registry.schema_memo``) reports exactly what jsonschema's own
Draft 2020-12 validator reports: the same errors, at the same paths, in the same order, on
generated registries whose items share and vary their values, valid and not."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from control_plane.registry.schema import file_schema, integration_schema
from control_plane.registry.schema_memo import memo_validator
from tests.unit.test_properties.strategies import documents


def _errors(validator: Any, instance: Any) -> list[tuple[str, str, str]]:
    return [
        (e.json_path, "/".join(map(str, e.schema_path)), e.message)
        for e in validator.iter_errors(instance)
    ]


def _both(schema: Any, instance: Any) -> tuple[list[Any], list[Any]]:
    with memo_validator(schema) as memo:
        got = _errors(memo, instance)
    return got, _errors(Draft202012Validator(schema), instance)


# Values that break one property, placed in some items and not in others.
_BREAKS = [
    ("kind", "nope"),
    ("listen_port", 0),
    ("listen_port", True),
    ("enabled", 1),
    ("upstream", "ftp://x"),
    ("policies", {"timeout": "soon"}),
    ("policies", {"timeout": 1.0, "retries": {"max_retries": 11}}),
    ("labels", {"bad key": "x"}),
    ("settings", {"nope": 1}),
    ("credentials", {"api_key": "literal-secret"}),
]


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(documents(), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 9), st.sampled_from(_BREAKS)), max_size=4),
)
def test_a_registry_gets_the_same_errors(docs: list[dict[str, Any]], breaks: list[Any]) -> None:
    items = [copy.deepcopy(d) for d in docs]
    # repeat items so that the memo sees the same values again, then break some copies
    items += [copy.deepcopy(d) for d in docs]
    for index, (field, value) in breaks:
        items[index % len(items)][field] = copy.deepcopy(value)
    got, want = _both(file_schema(), {"integrations": items})
    assert got == want


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(documents())
def test_one_document_gets_the_same_errors(doc: dict[str, Any]) -> None:
    assert _both(integration_schema(), doc)[0] == _both(integration_schema(), doc)[1]


def test_a_value_valid_in_one_place_is_still_checked_in_another() -> None:
    # the same value under two subschemas: remembered per subschema, never across them
    item = {"id": "a", "kind": "http", "upstream": "http://h", "policies": {"timeout": "1s"}}
    bad = {**item, "id": "b", "labels": {"x": "y" * 64}}
    got, want = _both(file_schema(), {"integrations": [item, item, bad, bad]})
    assert got == want and len(got) == 2


def test_values_equal_in_python_are_told_apart() -> None:
    # 1 == True == 1.0: a memo keyed on equality would let `enabled: 1` pass after `true`
    items = [
        {"id": "a", "kind": "http", "upstream": "http://h", "enabled": True},
        {"id": "b", "kind": "http", "upstream": "http://h", "enabled": 1},
        {"id": "c", "kind": "http", "upstream": "http://h", "listen_port": 1},
        {"id": "d", "kind": "http", "upstream": "http://h", "listen_port": True},
    ]
    got, want = _both(file_schema(), {"integrations": items})
    assert got == want and len(got) == 2


def test_a_schema_with_contextual_keywords_is_validated_without_the_memo() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "unevaluatedProperties": False,
    }
    with memo_validator(schema) as validator:
        assert type(validator) is Draft202012Validator
        assert not validator.is_valid({"a": 1, "b": 2})
