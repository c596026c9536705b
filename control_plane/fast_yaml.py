"""The common case of :mod:`control_plane.bounded_yaml`, fast: libyaml's events straight
to data.

A registry file is mostly plain mappings, sequences and scalars. For those, composing a
node graph in Python (with its marks), measuring it and constructing it again was most of
the service's start at 10,000 integrations (issue 20): eight seconds for a 5 MB file whose
events libyaml produces in a third of a second. :func:`fast_load` builds the data in one
pass over the events, with the same bounds (depth and node count, checked as it goes,
before anything else walks the result) and the same results: plain scalars are resolved and
constructed by PyYAML's own ``Resolver`` and ``SafeConstructor`` (once per distinct text).

It takes no risk with anything less common: an anchor, an alias, an explicit tag, a merge
key, a duplicate key, a collection as a key, more than one document, a limit reached or any
error make it answer ``None``, and the caller uses the full bounded loader, which refuses
or reports them in its own words, with their line and column. Line marks are not recorded
here: they are needed only to report a problem, and are then read from the full loader
(:class:`control_plane.registry.yamlmarks.MarkedDocument`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

if TYPE_CHECKING:
    from control_plane.bounded_yaml import YamlLimits

__all__ = ["Loaded", "fast_load"]

_STR = "tag:yaml.org,2002:str"
# What a plain scalar may resolve to here; anything else ("<<" merge keys, "=" values)
# goes to the full loader.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")
)


@dataclass(frozen=True, slots=True)
class Loaded:
    """The data of a document the fast path could load (``None`` for an empty one)."""

    data: Any


class _Unsupported(Exception):
    """The document needs the full bounded loader."""


class _Plain:
    """Plain scalars resolved and constructed by PyYAML, once per distinct text."""

    def __init__(self) -> None:
        self.resolver: Any = Resolver()
        self.constructor = SafeConstructor()
        self.cache: dict[str, Any] = {}

    def value(self, text: str) -> Any:
        try:
            return self.cache[text]
        except KeyError:
            pass
        tag = self.resolver.resolve(ScalarNode, text, (True, False))
        if tag not in _PLAIN_TAGS:
            raise _Unsupported(tag)
        value = (
            text
            if tag == _STR
            else self.constructor.yaml_constructors[tag](self.constructor, ScalarNode(tag, text))
        )
        self.cache[text] = value
        return value


def fast_load(text: str, limits: YamlLimits) -> Loaded | None:
    """The data of ``text``, or ``None`` when the full bounded loader must read it."""
    if not getattr(yaml, "__with_libyaml__", False):  # pragma: no cover - wheels ship it
        return None
    from yaml._yaml import CParser

    if len(text.encode("utf-8", errors="replace")) > limits.max_bytes:
        return None
    parser = CParser(text)
    try:
        return Loaded(_build(parser.get_event, limits))
    except (_Unsupported, yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError):
        # A scalar PyYAML cannot construct (``0x_``, ``2001-13-45``) raises here as soon as
        # it is read; the full loader reads the whole document first and reports an earlier
        # syntax error or limit in its own words, or the same problem.
        return None
    finally:
        parser.dispose()


def _build(get: Any, limits: YamlLimits) -> Any:
    get()  # StreamStartEvent
    event = get()
    if isinstance(event, StreamEndEvent):
        return None
    if not isinstance(event, DocumentStartEvent) or event.tags:
        raise _Unsupported("directives")
    plain = _Plain()
    cache, resolve = plain.cache, plain.value
    max_depth, max_nodes = limits.max_depth, limits.max_nodes
    # The open collection (``None`` at the top): a mapping's pending key (``_NO_KEY``
    # between entries) and the texts of its keys so far; the enclosing ones on ``stack``.
    container: Any = None
    is_map = False
    key: Any = _NO_KEY
    keys: set[str] = set()
    stack: list[tuple[Any, bool, Any, set[str]]] = []
    nodes = 0
    result: Any = None
    while True:
        event = get()
        kind = type(event)
        if kind is ScalarEvent:
            if event.anchor is not None or event.tag is not None:
                raise _Unsupported("anchor or tag")
            nodes += 1
            if len(stack) >= max_depth or nodes > max_nodes:
                raise _Unsupported("limits")
            text = event.value
            if event.implicit[0]:
                value = cache.get(text, _NO_KEY)
                if value is _NO_KEY:
                    value = resolve(text)
            else:
                value = text
            if is_map and key is _NO_KEY:
                # a key (scalars only): compared by text, as the full loader's check does
                if text in keys:
                    raise _Unsupported("duplicate key")
                keys.add(text)
                key = value
                continue
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.anchor is not None or event.tag is not None:
                raise _Unsupported("anchor or tag")
            nodes += 1
            if len(stack) >= max_depth or nodes > max_nodes:
                raise _Unsupported("limits")
            if is_map and key is _NO_KEY:
                raise _Unsupported("a collection as a key")
            stack.append((container, is_map, key, keys))
            is_map = kind is MappingStartEvent
            container = {} if is_map else []
            key = _NO_KEY
            keys = set()
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            value = container  # a value: a collection is never a key (refused above)
            container, is_map, key, keys = stack.pop()
        elif kind is DocumentEndEvent:
            if not isinstance(get(), StreamEndEvent):
                raise _Unsupported("more than one document")
            return result
        else:  # an alias, or anything unforeseen
            raise _Unsupported(kind.__name__)
        # ``value`` (a scalar or a closed collection) goes where the open collection wants it
        if is_map:
            container[key] = value
            key = _NO_KEY
        elif container is not None:
            container.append(value)
        else:
            result = value


_NO_KEY: Any = object()
