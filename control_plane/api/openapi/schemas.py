"""JSON Schemas (draft 2020-12, which OpenAPI 3.1 uses as is) of the API's bodies.

The request body of an integration is the registry's own schema
(:func:`~control_plane.registry.schema.integration_schema`), so the API accepts exactly what
the validator accepts. Response schemas mirror what the handlers return; they stay open
(no ``additionalProperties: false``) so adding a field is not a breaking change.
"""

from __future__ import annotations

from typing import Any

from control_plane.api.integrations import READ_ONLY
from control_plane.model import KINDS
from control_plane.registry.schema import integration_schema
from control_plane.sidecar.admin import CIRCUIT_BREAKER_GAUGES

__all__ = ["component_schemas"]

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_NUMBER: Schema = {"type": "number"}
_INTEGER: Schema = {"type": "integer"}
_BOOLEAN: Schema = {"type": "boolean"}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _all_required(properties: dict[str, Schema], **extra: Any) -> Schema:
    return _object(list(properties), properties, **extra)


def _integration_input() -> Schema:
    """The registry schema minus its top-level ``$schema``/``$id`` (the document's own)."""
    schema = {k: v for k, v in integration_schema().items() if k not in ("$schema", "$id")}
    schema["properties"] = {
        **schema["properties"],
        **{name: {"readOnly": True, "description": "ignored on input"} for name in READ_ONLY},
    }
    schema["description"] = (
        "An integration document, as in config/integrations.yaml. Credentials are "
        "references (env:NAME or file:/path), never values. The read-only fields of a GET "
        "body (version, source, created_at, updated_at, endpoint) are accepted and ignored, "
        "so a GET body can be PUT back."
    )
    return schema


def _integration() -> Schema:
    upstream = _object(
        ["host", "port", "scheme", "discovery", "tls"],
        {
            "host": _STRING,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "scheme": {"enum": ["http", "https", "tcp", "tls"]},
            "url": _STRING,
            "discovery": {"enum": ["dns", "static", "consul"]},
            "consul_service": _STRING,
            "tls": {"type": "object"},
        },
    )
    return _object(
        [
            "id",
            "kind",
            "tenant",
            "description",
            "enabled",
            "labels",
            "upstream",
            "credentials",
            "policies",
            "settings",
            "version",
            "source",
            "created_at",
            "updated_at",
            "endpoint",
        ],
        {
            "id": _STRING,
            "kind": {"enum": list(KINDS)},
            "tenant": _STRING,
            "description": _STRING,
            "enabled": _BOOLEAN,
            "labels": {"type": "object", "additionalProperties": _STRING},
            "upstream": upstream,
            "listen_port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "credentials": {
                "type": "object",
                "description": "credential references only; values are never returned",
                "additionalProperties": {
                    "type": "string",
                    "pattern": r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)$",
                },
            },
            "policies": {"type": "object"},
            "settings": {"type": "object"},
            "version": _INTEGER,
            "source": {"enum": ["declared", "registered"]},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "endpoint": {
                "type": "string",
                "description": "where the app connects: the integration's loopback port",
            },
        },
        description="A normalised integration as the registry holds it (defaults filled in).",
    )


def _type_status() -> Schema:
    nack = _all_required(
        {
            "version": _STRING,
            "nonce": _STRING,
            "message": _STRING,
            "code": _INTEGER,
            "at": {"type": "string", "format": "date-time"},
        }
    )
    return _all_required(
        {
            "type_url": _STRING,
            "state": {"enum": ["idle", "pending", "acked", "nacked"]},
            "sent_version": _NULLABLE_STRING,
            "sent_nonce": _NULLABLE_STRING,
            "sent_at": _TIMESTAMP,
            "acked_version": _NULLABLE_STRING,
            "acked_at": _TIMESTAMP,
            "push_count": _INTEGER,
            "last_nack": {"oneOf": [{"type": "null"}, nack]},
        }
    )


def _status() -> Schema:
    config = _all_required(
        {
            "state": {"enum": ["pending", "acked", "nacked", "disabled"]},
            "snapshot_version": _NULLABLE_STRING,
            "resource_versions": _all_required(
                {"cluster": _NULLABLE_STRING, "listener": _NULLABLE_STRING}
            ),
            "node": _all_required({"id": _STRING, "connected": _BOOLEAN}),
            "types": {"type": "object", "additionalProperties": _ref("XdsTypeStatus")},
            "error": _NULLABLE_STRING,
            "warnings": {"type": "array", "items": _STRING},
        }
    )
    return _all_required(
        {
            "id": _STRING,
            "enabled": _BOOLEAN,
            "listen_port": {"type": ["integer", "null"]},
            "endpoint": _STRING,
            "registry_version": _INTEGER,
            "source": {"enum": ["declared", "registered"]},
            "config": config,
        }
    )


def _probe_result() -> Schema:
    return _all_required(
        {
            "ok": _BOOLEAN,
            "latency_ms": _NUMBER,
            "step": _STRING,
            "detail": _STRING,
            "at": {"type": "string", "format": "date-time"},
        }
    )


def _integration_probe() -> Schema:
    probe = _probe_result()
    return _all_required(
        {
            "id": _STRING,
            "kind": {"enum": list(KINDS)},
            "state": {
                "enum": ["healthy", "unhealthy", "unknown"],
                "description": "the health state after this probe (thresholds applied)",
            },
            **probe["properties"],
        }
    )


def _integration_health() -> Schema:
    envoy = _object(
        ["reachable"],
        {
            "reachable": _BOOLEAN,
            "detail": _STRING,
            "cluster_known": _BOOLEAN,
            "hosts": {
                "type": "array",
                "items": _all_required(
                    {
                        "address": _STRING,
                        "healthy": _BOOLEAN,
                        "health_flags": {"type": "array", "items": _STRING},
                    }
                ),
            },
            "outlier": _all_required(
                {"ejections_active": _NUMBER, "ejections_enforced_total": _NUMBER}
            ),
        },
    )
    return _all_required(
        {
            "id": _STRING,
            "state": {"enum": ["healthy", "unhealthy", "unknown"]},
            "last_probe": {"oneOf": [{"type": "null"}, _ref("ProbeResult")]},
            "envoy": envoy,
        }
    )


def _bucket() -> Schema:
    return _all_required({"requests": _INTEGER, "per_s": _NUMBER, "burst": _INTEGER})


def _rate_limit() -> Schema:
    configured = _all_required(
        {
            "rule": _NULLABLE_STRING,
            "bucket": _ref("RateBucket"),
            "tenant_header": _NULLABLE_STRING,
            "per_tenant": {"type": "object", "additionalProperties": _ref("RateBucket")},
        }
    )
    return _all_required(
        {
            "id": _STRING,
            "configured": {"oneOf": [{"type": "null"}, configured]},
            "counters": _all_required(
                {"allowed": _NUMBER, "limited": _NUMBER, "enabled": _NUMBER, "enforced": _NUMBER}
            ),
            "limited_per_s": _NUMBER,
            "window_s": _NUMBER,
        }
    )


def _cache() -> Schema:
    schema = _all_required(
        {
            "id": _STRING,
            "enabled": _BOOLEAN,
            "generation": _INTEGER,
            "hits": _INTEGER,
            "misses": _INTEGER,
            "stored": _INTEGER,
            "hit_ratio": {"type": ["number", "null"]},
            "entries": _NUMBER,
            "bytes": _NUMBER,
            "path": _STRING,
        }
    )
    schema["properties"]["bypassed"] = {
        "type": "integer",
        "description": "requests the cache filter did not consider (e.g. not cacheable)",
    }
    schema["properties"]["disk"] = _all_required(
        {"files": _INTEGER, "bytes": _INTEGER},
        description="files and bytes actually in the cache directory",
    )
    return schema


def _cache_clear() -> Schema:
    schema = _all_required(
        {
            "id": _STRING,
            "generation": _INTEGER,
            "snapshot_version": _NULLABLE_STRING,
            "cleared_path": _STRING,
        }
    )
    schema["properties"]["acked"] = {
        "type": "boolean",
        "description": "Envoy ACKed the listener with the new cache path",
    }
    schema["properties"]["removed"] = {
        "type": "boolean",
        "description": "the old cache directories were deleted",
    }
    return schema


def _circuit_breaker() -> Schema:
    gauges = CIRCUIT_BREAKER_GAUGES
    return _all_required(
        {
            "id": _STRING,
            "state": {"enum": ["closed", "open", "half_open"]},
            "thresholds": _all_required(
                {
                    "max_connections": _INTEGER,
                    "max_pending_requests": _INTEGER,
                    "max_requests": _INTEGER,
                    "max_retries": _INTEGER,
                }
            ),
            "outlier_detection": _all_required(
                {
                    "enabled": _BOOLEAN,
                    "consecutive_5xx": _INTEGER,
                    "base_ejection_time_s": _NUMBER,
                    "max_ejection_percent": _INTEGER,
                    "ejections_active": _NUMBER,
                    "ejections_enforced_total": _NUMBER,
                }
            ),
            "gauges": _all_required({g: _NUMBER for g in gauges}),
            "overflow": _all_required(
                {
                    "upstream_cx_overflow": _NUMBER,
                    "upstream_rq_pending_overflow": _NUMBER,
                    "upstream_rq_retry_overflow": _NUMBER,
                }
            ),
            "hosts": {
                "type": "array",
                "items": _all_required(
                    {
                        "address": _STRING,
                        "health_flags": {"type": "array", "items": _STRING},
                        "failed_outlier_check": _BOOLEAN,
                    }
                ),
            },
            "generation": _INTEGER,
        }
    )


def _reset() -> Schema:
    return _all_required(
        {
            "id": _STRING,
            "generation": _INTEGER,
            "snapshot_version": _STRING,
            "acked": {
                "type": "boolean",
                "description": "Envoy ACKed the rebuilt cluster within 5 s (else 202)",
            },
        }
    )


def _checks() -> Schema:
    check = _object(["ok"], {"ok": _BOOLEAN, "detail": _STRING})
    return {"type": "object", "additionalProperties": check}


def _problem() -> Schema:
    item = _object(
        ["pointer", "message"],
        {
            "pointer": {"type": "string", "description": "RFC 6901 JSON pointer"},
            "message": _STRING,
            "fix": _STRING,
            "file": _STRING,
            "line": _INTEGER,
            "column": {"type": ["integer", "null"]},
        },
    )
    return _object(
        ["type", "title", "status", "detail"],
        {
            "type": {"type": "string", "description": "a URI naming the problem type"},
            "title": _STRING,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": _STRING,
            "errors": {
                "type": "array",
                "items": item,
                "description": "every validation problem, each with its JSON pointer",
            },
        },
        description="RFC 9457 problem details",
    )


def component_schemas() -> dict[str, Schema]:
    return {
        "IntegrationInput": _integration_input(),
        "Integration": _integration(),
        "IntegrationList": _object(
            ["items", "total", "limit", "offset"],
            {
                "items": {"type": "array", "items": _ref("Integration")},
                "total": _INTEGER,
                "limit": _INTEGER,
                "offset": _INTEGER,
                "next": {"type": "string", "description": "relative URL of the next page"},
            },
        ),
        "XdsTypeStatus": _type_status(),
        "IntegrationStatus": _status(),
        "ProbeResult": _probe_result(),
        "IntegrationProbe": _integration_probe(),
        "IntegrationHealth": _integration_health(),
        "RateBucket": _bucket(),
        "RateLimit": _rate_limit(),
        "CacheStats": _cache(),
        "CacheCleared": _cache_clear(),
        "CircuitBreaker": _circuit_breaker(),
        "CircuitBreakerReset": _reset(),
        "ServiceHealth": _all_required(
            {"status": {"enum": ["ok", "degraded"]}, "checks": _checks()}
        ),
        "Readiness": _all_required(
            {"status": {"enum": ["ready", "not_ready"]}, "checks": _checks()}
        ),
        "Liveness": _all_required({"status": {"const": "live"}, "loop_lag_ms": _NUMBER}),
        "Problem": _problem(),
    }
