"""YAML parsing with bounds, for every YAML file the service reads.

YAML anchors and aliases let a few hundred bytes stand for billions of nodes ("billion
laughs": nine anchors of nine aliases each is 9**9 nodes). PyYAML's constructor shares the
aliased objects, so building them is cheap, but everything that walks the result — the
line-mark walker, JSON Schema validation, the translator — expands them, and a 359-byte file
used to take gigabytes and hang the event loop (signals included). Here the document is
composed once with a :class:`yaml.SafeLoader`, its node graph is measured *before anything
walks it* — bytes, nesting depth, aliases, and the node count and depth after alias expansion
(computed over the shared graph, never by expanding it) — and only a document within the
limits is constructed. Recursive aliases (an anchor inside itself) are refused too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from control_plane.fast_yaml import fast_load

# libyaml is optional in PyYAML (its wheels ship it); without it all is pure Python.
_FAST = bool(getattr(yaml, "__with_libyaml__", False))
if _FAST:
    from yaml._yaml import CParser
else:  # pragma: no cover - the fast loader is then never built
    CParser = object  # type: ignore[assignment,misc]
__all__ = ["DEFAULT_LIMITS", "YamlLimitError", "YamlLimits", "compose_bounded", "load_bounded"]


@dataclass(frozen=True, slots=True)
class YamlLimits:
    max_bytes: int = 32 * 2**20
    max_depth: int = 64
    max_aliases: int = 100_000
    # Nodes after alias expansion: 10,000 integrations of ~60 nodes each are 600,000.
    max_nodes: int = 2_000_000


DEFAULT_LIMITS = YamlLimits()
FIX = (
    "write the values out instead of nesting anchors and aliases (a '<<: *defaults' per "
    "entry is fine); the limits keep an alias bomb from exhausting the service"
)


class YamlLimitError(yaml.YAMLError):
    """The document exceeds a limit; ``line``/``column`` (1-based) locate it when known."""

    def __init__(self, message: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = FIX
        self.line = mark.line + 1 if mark is not None else None
        self.column = mark.column + 1 if mark is not None else None


class _Bounds(Composer):
    """Counts aliases and nesting while it composes (mixed into a loader before its
    parser, whose events it reads)."""

    limits: YamlLimits
    aliases: int
    depth: int
    nodes: int

    if TYPE_CHECKING:  # the parser's, from the loader this is mixed into

        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Any: ...

    def _bound(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.aliases = 0
        self.depth = 0
        self.nodes = 0  # composed, aliases not counted

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.max_aliases:
                raise YamlLimitError(
                    f"more than {self.limits.max_aliases} aliases",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        self.depth += 1
        self.nodes += 1
        try:
            if self.depth > self.limits.max_depth:
                raise YamlLimitError(
                    f"nested deeper than {self.limits.max_depth} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _BoundedLoader(_Bounds, yaml.SafeLoader):
    """The pure-Python SafeLoader, bounded: the reference, and what reports errors."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._bound(limits)


class _FastBoundedLoader(_Bounds, CParser, SafeConstructor, Resolver):
    """The same, with libyaml's scanner and parser under Python's composer (so the bounds
    above still see every node). The scanner and parser were about half of the service's
    start at 10,000 integrations (issue 20); composing, resolving and constructing stay
    PyYAML's own code: the marks and data are the same (only the presentation
    attributes ``style``/``flow_style``, which nothing here reads, are libyaml's)."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        CParser.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._bound(limits)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, limits: YamlLimits) -> None:
    """Node count and depth of the document as its aliases would expand, over the shared
    graph (each distinct node measured once), without recursion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            total = 1 + sum(size[id(k)] for k in kids)
            deepest = 1 + max((depth[id(k)] for k in kids), default=0)
            visiting.discard(key)
            if total > limits.max_nodes:
                raise YamlLimitError(
                    f"expands to more than {limits.max_nodes} nodes through its aliases",
                    node.start_mark,
                )
            if deepest > limits.max_depth:
                raise YamlLimitError(
                    f"nested deeper than {limits.max_depth} levels through its aliases",
                    node.start_mark,
                )
            size[key], depth[key] = total, deepest
            continue
        if key in size:
            continue
        if key in visiting:
            raise YamlLimitError("an alias refers to its own anchor (recursive)", node.start_mark)
        visiting.add(key)
        stack.append((node, True))
        for kid in _children(node):
            kid_key = id(kid)
            if kid_key in visiting:
                raise YamlLimitError(
                    "an alias refers to its own anchor (recursive)", kid.start_mark
                )
            if kid_key not in size:
                stack.append((kid, False))


def compose_bounded(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> tuple[yaml.Node | None, Any]:
    """The node graph (with marks) and the constructed data of a single-document ``text``.

    Raises :class:`YamlLimitError` past a limit and :class:`yaml.YAMLError` (marked where
    PyYAML knows the position) for invalid YAML.
    """
    if len(text.encode("utf-8", errors="replace")) > limits.max_bytes:
        raise YamlLimitError(f"larger than {limits.max_bytes} bytes")
    if _FAST:
        try:
            return _compose(_FastBoundedLoader(text, limits), limits)
        except yaml.YAMLError:
            pass  # reported by the pure-Python loader below, in its own words and marks
    return _compose(_BoundedLoader(text, limits), limits)


def _compose(loader: Any, limits: YamlLimits) -> tuple[yaml.Node | None, Any]:
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        # Without aliases the expansion is the composed tree itself, whose depth was
        # bounded while composing: only its size is left to check (the walk below was a
        # tenth of the service's start at 10,000 integrations).
        if loader.aliases or loader.nodes > limits.max_nodes:
            _check_expansion(node, limits)
        return node, loader.construct_document(node)
    finally:
        loader.dispose()


def load_bounded(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """Like ``yaml.safe_load``, within ``limits``."""
    loaded = fast_load(text, limits)
    return loaded.data if loaded is not None else compose_bounded(text, limits)[1]
