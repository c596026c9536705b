"""JSON Schema validation that checks each distinct value of a property once.

``jsonschema`` is pure Python: every keyword it evaluates creates a validator object and a
resource for its subschema, a few microseconds each, and a registry entry takes about fifty.
At 10,000 integrations that was three seconds of the service's start (issue 20), most of it
spent proving again that ``kind: http``, ``timeout: 15s`` or the same ``policies`` block are
valid. :func:`memo_validator` returns a validator whose ``properties`` keyword remembers,
for the length of one validation, the values it found valid against each subschema, and
does not descend into them again: the errors reported (for an invalid value nothing is
remembered) and the answer are those of the plain validator. ``allOf`` branches and ``if``
conditions that read only some properties of an object (the per-kind branches read
``kind``, ``settings`` and ``credentials``) are remembered for those properties' values.

The result of a subschema depends on the value only: the registry's schemas use no
``$dynamicRef`` and no ``unevaluated*`` keyword (checked here, so a schema that adds one
is validated without the memo). A value is remembered by its ``repr``, which tells apart
what equality does not (``1``, ``1.0``, ``True`` and ``"1"``), and keyed by the subschema
object, kept alive with it, so a key never outlives the subschema it names.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

__all__ = ["memo_validator"]

# For the length of one validation: (tag, id of a subschema, text) -> the subschema and what
# is known of it, the subschema kept alive so its id is never reused meanwhile:
#   ("valid", id, repr of a value) -> (subschema, True): the value is valid against it;
#   ("if", id, projection) -> (subschema, answer): an ``if`` condition's answer;
#   ("reads", id, "") -> (subschema, names or None): the properties it reads (below).
_MEMO: ContextVar[dict[tuple[str, int, str], Any] | None] = ContextVar("schema_memo", default=None)
# Keywords whose result depends on more than the value and its subschema.
_CONTEXTUAL = ("$dynamicRef", "unevaluatedProperties", "unevaluatedItems", "$recursiveRef")
# Keywords that read nothing of an object but its type or the properties they name ...
_ANNOTATIONS = frozenset(("type", "description", "title", "default", "$comment"))
# ... and those that apply subschemas to the same instance (which must read no more).
_SAME_INSTANCE = ("if", "then", "else", "not")
_SAME_INSTANCE_LISTS = ("allOf", "anyOf", "oneOf")
# Values longer than this are not worth remembering (each is seen once, as a whole item).
_MAX_KEY = 2048

Memo = dict[tuple[str, int, str], Any]


def _names_read(schema: Any) -> frozenset[str] | None:
    """The properties of an object instance ``schema``'s result can depend on (beyond the
    instance's type), or ``None`` when it may read more (``additionalProperties``,
    ``enum`` of the whole object, a ``$ref``...)."""
    if isinstance(schema, bool):
        return frozenset()
    if not isinstance(schema, Mapping):
        return None
    names: set[str] = set()
    for word, sub in schema.items():
        if word in ("properties", "required"):
            names.update(sub)
        elif word in _SAME_INSTANCE or word in _SAME_INSTANCE_LISTS:
            for part in (sub,) if word in _SAME_INSTANCE else sub:
                read = _names_read(part)
                if read is None:
                    return None
                names |= read
        elif word not in _ANNOTATIONS:
            return None
    return frozenset(names)


def _shape_key(
    memo: Memo, tag: str, schema: Any, instance: Any, texts: dict[Any, str] | None = None
) -> tuple[str, int, str] | None:
    """A key for ``schema``'s result on ``instance``: the properties it reads, or the whole
    value when it is not an object. ``texts``: projections of this instance already made,
    by the names read (the branches of one ``allOf`` mostly read the same ones)."""
    if isinstance(instance, dict):
        known = memo.get(("reads", id(schema), ""))
        if known is None or known[0] is not schema:
            read = _names_read(schema)
            known = memo[("reads", id(schema), "")] = (
                schema,
                None if read is None else tuple(sorted(read)),
            )
        if known[1] is None:
            return None
        made = texts.get(known[1]) if texts is not None else None
        if made is None:
            made = "dict:" + repr([(name, instance[name]) for name in known[1] if name in instance])
            if texts is not None:
                texts[known[1]] = made
        text = made
    else:
        text = repr(instance)
    return (tag, id(schema), text) if len(text) <= _MAX_KEY else None


def _descend_once(
    validator: Any, memo: Memo | None, key: tuple[str, int, str] | None, schema: Any, **where: Any
) -> Iterator[ValidationError]:
    """``validator.descend``, skipped when ``key`` was found valid; remembered when it is."""
    if memo is None or key is None:
        yield from validator.descend(schema=schema, **where)
        return
    known = memo.get(key)
    if known is not None and known[0] is schema:
        return
    errors = list(validator.descend(schema=schema, **where))
    if errors:
        yield from errors
    else:
        memo[key] = (schema, True)


def _properties(
    validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """``jsonschema``'s own, each distinct value checked once per subschema."""
    if not validator.is_type(instance, "object"):
        return
    memo = _MEMO.get()
    for prop, subschema in properties.items():
        if prop in instance:
            value = instance[prop]
            text = repr(value) if memo is not None else ""
            key = ("valid", id(subschema), text) if len(text) <= _MAX_KEY else None
            yield from _descend_once(
                validator, memo, key, subschema, instance=value, path=prop, schema_path=prop
            )


def _all_of(
    validator: Any, all_of: list[Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """``jsonschema``'s own, a branch checked once for the properties it reads (the
    per-kind ``if``/``then`` branches read ``kind``, ``settings`` and ``credentials``)."""
    memo = _MEMO.get()
    texts: dict[Any, str] = {}
    for index, subschema in enumerate(all_of):
        key = _shape_key(memo, "valid", subschema, instance, texts) if memo is not None else None
        yield from _descend_once(
            validator, memo, key, subschema, instance=instance, schema_path=index
        )


def _if(validator: Any, if_schema: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``jsonschema``'s own, the condition's answer remembered for the properties it
    reads (``kind: http`` against each kind's condition)."""
    memo = _MEMO.get()
    key = _shape_key(memo, "if", if_schema, instance) if memo is not None else None
    known = memo.get(key) if memo is not None and key is not None else None
    if known is not None and known[0] is if_schema:
        holds = known[1]
    else:
        holds = validator.evolve(schema=if_schema).is_valid(instance)
        if memo is not None and key is not None:
            memo[key] = (if_schema, holds)
    if holds:
        if "then" in schema:
            yield from validator.descend(instance, schema["then"], schema_path="then")
    elif "else" in schema:
        yield from validator.descend(instance, schema["else"], schema_path="else")


_MemoValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"properties": _properties, "allOf": _all_of, "if": _if}
)


# id of a schema -> (the schema, kept alive; whether the memo may serve it). The registry's
# schemas are built once (``functools.cache``): checked once, not on every validation.
_SAFE: dict[int, tuple[Mapping[str, Any], bool]] = {}


def _memo_safe(schema: Mapping[str, Any]) -> bool:
    known = _SAFE.get(id(schema))
    if known is None or known[0] is not schema:
        text = json.dumps(schema)
        known = _SAFE[id(schema)] = (schema, not any(f'"{w}"' in text for w in _CONTEXTUAL))
    return known[1]


@contextlib.contextmanager
def memo_validator(schema: Mapping[str, Any]) -> Iterator[Validator]:
    """A Draft 2020-12 validator of ``schema``; within the block, valid property values
    are checked once per subschema."""
    if not _memo_safe(schema):
        yield Draft202012Validator(schema)
        return
    token = _MEMO.set({})
    try:
        yield _MemoValidator(schema)
    finally:
        _MEMO.reset(token)
