"""The fast YAML path (``control_plane.fast_yaml``) loads exactly what the full bounded
loader loads, or declines: compared value by value and type by type on generated documents,
on every YAML file the repository ships, and on the constructs it must leave to the full
loader (which then reports them with their line)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.bounded_yaml import DEFAULT_LIMITS, YamlLimitError, YamlLimits, compose_bounded
from control_plane.fast_yaml import fast_load
from control_plane.registry.yamlmarks import load_marked

ROOT = Path(__file__).resolve().parents[2]


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (``1 == True == 1.0`` in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)  # NaN


def _full(text: str) -> Any:
    return compose_bounded(text)[1]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["yes", "no", "on", "0x1f", "0o17", "1_000", "1:30", "~", ".inf", "-.Inf"]),
    st.sampled_from(["2001-12-14", "2001-12-14t21:59:43.10-05:00", "=", "<<", "0b101"]),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(values, st.booleans(), st.sampled_from([None, '"', "'"]))
def test_generated_documents_load_the_same(value: Any, flow: bool, style: str | None) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, default_style=style, sort_keys=False)
    loaded = fast_load(text, DEFAULT_LIMITS)
    if loaded is not None:
        assert _same(loaded.data, _full(text)), text


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(
    st.lists(
        st.sampled_from(
            [
                "a: 1\n",
                "- x\n",
                "  ",
                "'q'",
                "[",
                "]",
                "{",
                "}",
                ": ",
                ",",
                "&a ",
                "*a ",
                "!!str ",
                "? ",
                "<<: ",
                "---\n",
                "#c\n",
                "\n",
                "2001-12-14",
                "0x1f",
                "|\n",
                '"\\t"',
            ]
        ),
        max_size=12,
    )
)
def test_arbitrary_text_is_loaded_the_same_or_left_to_the_full_loader(parts: list[str]) -> None:
    text = "".join(parts)
    loaded = fast_load(text, DEFAULT_LIMITS)
    if loaded is not None:
        assert _same(loaded.data, _full(text)), text


def test_every_shipped_yaml_file_loads_the_same() -> None:
    files = [
        p
        for pattern in ("config/*.yaml", "manifests/**/*.yaml", "tests/**/*.yaml")
        for p in ROOT.glob(pattern)
    ]
    assert files
    fast = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            full = _full(text)
        except yaml.YAMLError:
            continue  # several documents (manifests): the full loader's to refuse
        loaded = fast_load(text, DEFAULT_LIMITS)
        if loaded is not None:
            fast += 1
            assert _same(loaded.data, full), path
    assert fast >= 3


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key: reported by the full loader
        "1: a\n'1': b\n",  # the same key text, as the full loader compares them
        "- &x 1\n- *x\n",  # anchors and aliases: the full loader bounds their expansion
        "a: !!str 1\n",  # explicit tags
        "<<: {a: 1}\n",  # merge keys
        "? [a]\n: 1\n",  # a collection as a key
        "a: 1\n---\nb: 2\n",  # several documents
        "%TAG !e! tag:example.com,2000:\n---\na: 1\n",
        "=: 1\n",
        "[" * 70 + "]" * 70,  # deeper than the limit
        "a: [1,\n",  # a syntax error
        "a: 0x_\nb: [1\n",  # a scalar PyYAML cannot construct, then a syntax error
        "a: 2001-13-45\n",
    ],
)
def test_what_it_leaves_to_the_full_loader(text: str) -> None:
    assert fast_load(text, DEFAULT_LIMITS) is None


def test_a_bad_scalar_before_a_syntax_error_is_reported_as_the_full_loader_does() -> None:
    doc = load_marked("a: 0x_\nb: [1\n", "f.yaml")
    assert [p.message.split(":")[0] for p in doc.problems] == ["YAML syntax error"]


def test_limits_are_those_of_the_full_loader() -> None:
    limits = YamlLimits(max_depth=3, max_nodes=5)
    assert fast_load("a: {b: 1}\n", limits) is not None  # depth 3, 4 nodes
    assert fast_load("a: {b: {c: 1}}\n", limits) is None  # depth 4
    with pytest.raises(YamlLimitError):
        compose_bounded("a: {b: {c: 1}}\n", limits)
    assert fast_load("[1, 2, 3, 4, 5]\n", limits) is None  # 6 nodes
    assert fast_load("a: 1\n", YamlLimits(max_bytes=3)) is None


def test_plain_scalars_are_constructed_by_pyyaml() -> None:
    loaded = fast_load("a: 2001-12-14\nb: 0x1f\nc: yes\nd: ~\ne: 1_000\nf: '1'\n", DEFAULT_LIMITS)
    assert loaded is not None
    assert loaded.data == {
        "a": dt.date(2001, 12, 14),
        "b": 31,
        "c": True,
        "d": None,
        "e": 1000,
        "f": "1",
    }


def test_an_empty_document_is_none() -> None:
    assert fast_load("", DEFAULT_LIMITS) == fast_load("# only a comment\n", DEFAULT_LIMITS)
    loaded = fast_load("", DEFAULT_LIMITS)
    assert loaded is not None and loaded.data is None


def test_marks_of_a_fast_document_are_read_when_a_problem_needs_them() -> None:
    text = "integrations:\n  - id: a\n    kind: http\n  - id: b\n    kind:   http\n"
    doc = load_marked(text, "f.yaml")
    assert doc.text == text and not doc.marks  # loaded fast: no marks yet
    assert doc.locate(("integrations", 1, "kind")) == (5, 13)
    assert doc.locate(("integrations", 1, "kind"), key=True) == (5, 5)
    assert doc.problem(("integrations", 0, "nope"), "m").line == 2
    assert doc.text is None
