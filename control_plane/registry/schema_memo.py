"""JSON Schema validation that checks each distinct value of a property once.

``jsonschema`` is pure Python: every keyword it evaluates creates a validator object and a
resource for its subschema, a few microseconds each, and a registry entry takes about fifty.
At 10,000 integrations that was three seconds of the service's start (issue 20), most of it
spent proving again that ``kind: http``, ``timeout: 15s`` or the same ``policies`` block are
valid. :func:`memo_validator` returns a validator whose ``properties`` keyword remembers,
for the length of one validation, the values it found valid against each subschema, and
does not descend into them again: the errors reported (for an invalid value nothing is
remembered) and the answer are those of the plain validator.

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

# ("properties", id of the subschema, repr of the value) -> the subschema, for values found
# valid; ("if", id of an ``if`` subschema, repr of the properties it reads) -> (the
# subschema, its answer).
_MEMO: ContextVar[dict[tuple[str, int, str], Any] | None] = ContextVar("schema_memo", default=None)
# An ``if`` subschema made only of these reads nothing but the properties it names.
_PROJECTABLE = frozenset(("properties", "required", "type", "description"))
# Keywords whose result depends on more than the value and its subschema.
_CONTEXTUAL = ("$dynamicRef", "unevaluatedProperties", "unevaluatedItems", "$recursiveRef")
# Values longer than this are not worth remembering (each is seen once, as a whole item).
_MAX_KEY = 2048


def _properties(
    validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    memo = _MEMO.get()
    for prop, subschema in properties.items():
        if prop not in instance:
            continue
        value = instance[prop]
        key = None
        if memo is not None:
            text = repr(value)
            if len(text) <= _MAX_KEY:
                key = ("properties", id(subschema), text)
                if memo.get(key) is subschema:
                    continue
        errors = list(validator.descend(value, subschema, path=prop, schema_path=prop))
        if errors:
            yield from errors
        elif key is not None and memo is not None:
            memo[key] = subschema


def _condition_key(if_schema: Any, instance: Any) -> tuple[str, int, str] | None:
    if not isinstance(if_schema, Mapping) or not _PROJECTABLE.issuperset(if_schema):
        return None
    if not isinstance(instance, dict):
        text = repr(instance)
        return ("if", id(if_schema), text) if len(text) <= _MAX_KEY else None
    names = sorted({*if_schema.get("properties", {}), *if_schema.get("required", ())})
    text = repr([(name, instance[name]) for name in names if name in instance])
    return ("if", id(if_schema), f"dict:{text}") if len(text) <= _MAX_KEY else None


def _if(validator: Any, if_schema: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``jsonschema``'s own ``if``, with the condition's answer remembered for the
    properties it reads (``kind: http`` against each kind's condition)."""
    memo = _MEMO.get()
    key = _condition_key(if_schema, instance) if memo is not None else None
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
    Draft202012Validator, {"properties": _properties, "if": _if}
)


def _memo_safe(schema: Mapping[str, Any]) -> bool:
    text = json.dumps(schema)
    return not any(f'"{word}"' in text for word in _CONTEXTUAL)


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
