"""Every YAML the service reads is parsed within bounds: alias bombs of several shapes are
refused fast, with the line of the offending node, and ordinary anchors still work."""

from __future__ import annotations

import pytest

from control_plane.bounded_yaml import YamlLimitError, YamlLimits, load_bounded


def _laughs(levels: int = 9, width: int = 9) -> str:
    """The classic: level N is a sequence of ``width`` aliases to level N-1 (width**levels)."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _mapping_bomb(levels: int = 9) -> str:
    lines = ["m0: &m0 {a: lol, b: lol, c: lol, d: lol, e: lol, f: lol, g: lol, h: lol}"]
    for n in range(1, levels):
        keys = ", ".join(f"k{i}: *m{n - 1}" for i in range(9))
        lines.append(f"m{n}: &m{n} {{{keys}}}")
    return "\n".join(lines) + "\n"


def _merge_bomb(levels: int = 9) -> str:
    lines = ["m0: &m0 {a: [lol, lol, lol, lol, lol, lol, lol, lol, lol]}"]
    for n in range(1, levels):
        keys = ", ".join(f"k{i}: *m{n - 1}" for i in range(9))
        lines.append(f"m{n}: &m{n} {{<<: *m{n - 1}, {keys}}}")
    return "\n".join(lines) + "\n"


def _integrations_bomb() -> str:
    """A bomb inside an otherwise plausible integrations file."""
    return (
        "integrations:\n"
        "  - id: api\n"
        "    kind: http\n"
        "    upstream: https://api.example.com\n"
        "    labels: &l1 [&l0 [a, a, a, a, a, a, a, a, a]"
        + ", *l0" * 8
        + "]\n"
        + "".join(f"    x{n}: &l{n + 1} [" + ", ".join([f"*l{n}"] * 9) + "]\n" for n in range(1, 9))
    )


@pytest.mark.parametrize(
    "text",
    [_laughs(), _mapping_bomb(), _merge_bomb(), _integrations_bomb()],
    ids=["nested-sequences", "nested-mappings", "merge-keys", "in-an-integrations-file"],
)
def test_bombs_are_refused_with_a_line(text: str) -> None:
    assert len(text) < 2000  # a few hundred bytes standing for billions of nodes
    with pytest.raises(YamlLimitError) as info:
        load_bounded(text)
    assert "aliases" in info.value.message
    assert info.value.line is not None and info.value.line >= 1
    assert "alias" in info.value.fix


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(YamlLimitError, match="recursive"):
        load_bounded("a: &a [1, *a]\n")


def test_depth_bytes_and_alias_count_are_bounded() -> None:
    deep = "a: " + "[" * 100 + "]" * 100 + "\n"
    with pytest.raises(YamlLimitError, match="deeper than 64"):
        load_bounded(deep)
    with pytest.raises(YamlLimitError, match="larger than 100 bytes"):
        load_bounded("a: " + "x" * 200, YamlLimits(max_bytes=100))
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * 50) + "]\n"
    with pytest.raises(YamlLimitError, match="more than 10 aliases"):
        load_bounded(many, YamlLimits(max_aliases=10))


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    text = (
        "defaults: &defaults {timeout: 5s, retries: 2}\n"
        "integrations:\n"
        "  - {<<: *defaults, id: a}\n"
        "  - {<<: *defaults, id: b, retries: 0}\n"
    )
    data = load_bounded(text)
    assert data["integrations"] == [
        {"timeout": "5s", "retries": 2, "id": "a"},
        {"timeout": "5s", "retries": 0, "id": "b"},
    ]
    assert load_bounded("") is None
