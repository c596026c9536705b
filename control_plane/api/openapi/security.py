"""The security part of the OpenAPI document: schemes, the API-key and audit schemas, and
401/403/429 on every operation that needs credentials (from the permission matrix, so the
document and the middleware cannot disagree)."""

from __future__ import annotations

import copy
from typing import Any

from control_plane.security.authz import rule_for
from control_plane.security.principal import ROLES

__all__ = ["add_security"]

Json = dict[str, Any]
_METHODS = ("get", "put", "post", "delete", "patch")
_PROBLEM = "application/problem+json"
_TIME: Json = {"type": "string", "format": "date-time"}
_NULL_TIME: Json = {"type": ["string", "null"], "format": "date-time"}


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _headers(*names: str) -> Json:
    return {n: _ref("headers", n) for n in ("X-Request-ID", "traceparent", *names)}


def _problem(description: str, *headers: str) -> Json:
    return {
        "description": description,
        "content": {_PROBLEM: {"schema": _ref("schemas", "Problem")}},
        "headers": _headers(*headers),
    }


def _json(schema: str, description: str) -> Json:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("schemas", schema)}},
        "headers": _headers(),
    }


def _query(name: str, description: str, schema: Json) -> Json:
    return {"name": name, "in": "query", "description": description, "schema": schema}


_KEY: Json = {
    "type": "object",
    "required": ["id", "prefix", "name", "role", "tenant", "created_at", "state"],
    "properties": {
        "id": {"type": "string"},
        "prefix": {"type": "string", "description": "isk_<id>: the non-secret start of the key"},
        "name": {"type": "string"},
        "role": {"enum": list(ROLES)},
        "tenant": {"type": "string", "description": "the tenant, or * for a global key"},
        "created_at": _TIME,
        "expires_at": _NULL_TIME,
        "revoked_at": _NULL_TIME,
        "state": {"enum": ["active", "expired", "revoked"]},
    },
}

_SCHEMAS: Json = {
    "ApiKey": _KEY,
    "ApiKeyCreated": {
        "allOf": [
            _ref("schemas", "ApiKey"),
            {
                "type": "object",
                "required": ["key"],
                "properties": {"key": {"type": "string", "description": "shown only once"}},
            },
        ]
    },
    "ApiKeyInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "role": {"enum": list(ROLES), "default": "viewer"},
            "tenant": {"type": "string", "minLength": 1, "maxLength": 128},
            "expires_in": {"type": "integer", "minimum": 1, "maximum": 1000000000},
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "ApiKeyList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("schemas", "ApiKey")}},
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "principal", "action", "target"],
        "properties": {
            "id": {"type": "integer"},
            "at": _TIME,
            "principal": {"type": "string"},
            "tenant": {"type": ["string", "null"]},
            "action": {"type": "string"},
            "target": {"type": "string"},
            "before": {"type": ["object", "null"]},
            "after": {"type": ["object", "null"]},
            "request_id": {"type": ["string", "null"]},
        },
    },
    "AuditList": {
        "type": "object",
        "required": ["items", "limit"],
        "properties": {
            "items": {"type": "array", "items": _ref("schemas", "AuditEntry")},
            "limit": {"type": "integer"},
            "next": {"type": "string"},
        },
    },
}

_RESPONSES: Json = {
    "Unauthorized": _problem(
        "No credentials, or credentials that are not valid", "WWW-Authenticate"
    ),
    "Forbidden": _problem("The credentials' role does not allow this operation"),
    "TooManyRequests": _problem("The principal exceeded its request rate", "Retry-After"),
}

_HEADERS: Json = {
    "WWW-Authenticate": {
        "description": 'Bearer realm="integration-service" (error="invalid_token" when rejected)',
        "schema": {"type": "string"},
    },
}


def add_security(document: Json) -> Json:
    """``document`` with the security schemes, schemas and responses merged in."""
    out = copy.deepcopy(document)
    components = out.setdefault("components", {})
    components.setdefault("schemas", {}).update(copy.deepcopy(_SCHEMAS))
    components.setdefault("responses", {}).update(copy.deepcopy(_RESPONSES))
    components.setdefault("headers", {}).update(copy.deepcopy(_HEADERS))
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (isk_<id>_<secret>) or a JWT from the configured issuer",
        },
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    out["security"] = [{"bearer": []}, {"apiKey": []}]
    out.setdefault("tags", []).append(
        {"name": "security", "description": "API keys and the audit log"}
    )
    for path, item in out["paths"].items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            rule = rule_for(method.upper(), path)
            if rule.public:
                operation["security"] = [{}, {"bearer": []}] if path == "/metrics" else []
                continue
            responses = operation["responses"]
            responses.setdefault("401", _ref("responses", "Unauthorized"))
            responses.setdefault("403", _ref("responses", "Forbidden"))
            responses.setdefault("429", _ref("responses", "TooManyRequests"))
            operation["description"] += f" Needs the `{rule.role}` role."
    return out
