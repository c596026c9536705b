"""Building blocks of the component schemas (JSON Schema 2020-12, as OpenAPI 3.1 uses it)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BOOLEAN",
    "INTEGER",
    "NULLABLE_STRING",
    "NUMBER",
    "STRING",
    "TIMESTAMP",
    "Schema",
    "all_required",
    "obj",
    "schema_ref",
]

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
NUMBER: Schema = {"type": "number"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time"}


def schema_ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


def all_required(properties: dict[str, Schema], **extra: Any) -> Schema:
    return obj(list(properties), properties, **extra)
