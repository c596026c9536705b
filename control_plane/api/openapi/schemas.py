"""JSON Schemas (draft 2020-12, which OpenAPI 3.1 uses as is) of the API's bodies.

The request body of an integration is the registry's own schema
(:func:`~control_plane.registry.schema.integration_schema`), so the API accepts exactly what
the validator accepts. Response schemas mirror what the handlers return; they stay open
(no ``additionalProperties: false``) so adding a field is not a breaking change.
"""

from __future__ import annotations

from control_plane.api.integrations import READ_ONLY
from control_plane.api.openapi.schema_parts import (
    BOOLEAN,
    INTEGER,
    NULLABLE_STRING,
    NUMBER,
    STRING,
    TIMESTAMP,
    Schema,
    all_required,
    obj,
    schema_ref,
)
from control_plane.api.openapi.traffic_schemas import (
    bucket_schema,
    cache_clear_schema,
    cache_schema,
    circuit_breaker_schema,
    rate_limit_schema,
    reset_schema,
)
from control_plane.model import KINDS
from control_plane.registry.schema import integration_schema

__all__ = ["component_schemas"]


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
    upstream = obj(
        ["host", "port", "scheme", "discovery", "tls"],
        {
            "host": STRING,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "scheme": {"enum": ["http", "https", "tcp", "tls"]},
            "url": STRING,
            "discovery": {"enum": ["dns", "static", "consul"]},
            "consul_service": STRING,
            "resolution": {"enum": ["vetted", "envoy"]},
            "tls": {"type": "object"},
        },
    )
    return obj(
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
            "id": STRING,
            "kind": {"enum": list(KINDS)},
            "tenant": STRING,
            "description": STRING,
            "enabled": BOOLEAN,
            "labels": {"type": "object", "additionalProperties": STRING},
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
            "version": INTEGER,
            "source": {"enum": ["declared", "registered"]},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "endpoint": {
                "type": "string",
                "description": "where the app connects: the integration's loopback port",
            },
        },
        description="A normalised integration as the registry holds it (defaults filled in).",
    )


def _type_status() -> Schema:
    nack = all_required(
        {
            "version": STRING,
            "nonce": STRING,
            "message": STRING,
            "code": INTEGER,
            "at": {"type": "string", "format": "date-time"},
        }
    )
    return all_required(
        {
            "type_url": STRING,
            "state": {"enum": ["idle", "pending", "acked", "nacked"]},
            "sent_version": NULLABLE_STRING,
            "sent_nonce": NULLABLE_STRING,
            "sent_at": TIMESTAMP,
            "acked_version": NULLABLE_STRING,
            "acked_at": TIMESTAMP,
            "push_count": INTEGER,
            "last_nack": {"oneOf": [{"type": "null"}, nack]},
        }
    )


def _status() -> Schema:
    config = all_required(
        {
            "state": {"enum": ["pending", "acked", "nacked", "disabled"]},
            "snapshot_version": NULLABLE_STRING,
            "resource_versions": all_required(
                {"cluster": NULLABLE_STRING, "listener": NULLABLE_STRING}
            ),
            "node": all_required({"id": STRING, "connected": BOOLEAN}),
            "types": {"type": "object", "additionalProperties": schema_ref("XdsTypeStatus")},
            "error": NULLABLE_STRING,
            "warnings": {"type": "array", "items": STRING},
        }
    )
    required = {
        "id": STRING,
        "enabled": BOOLEAN,
        "listen_port": {"type": ["integer", "null"]},
        "endpoint": STRING,
        "registry_version": INTEGER,
        "source": {"enum": ["declared", "registered"]},
        "resolution": schema_ref("Resolution"),
        "config": config,
        "token": schema_ref("TokenStatus"),
    }
    withheld = {
        "type": "object",
        "description": "References whose values the credential policy keeps out of Envoy",
        "additionalProperties": all_required({"rule": STRING, "reason": STRING}),
    }
    versions = all_required({"cluster": NULLABLE_STRING, "listener": NULLABLE_STRING})
    node = all_required(
        {
            "node_id": STRING,
            "workload": STRING,
            "identity": NULLABLE_STRING,
            "connected": BOOLEAN,
            "state": {"enum": ["pending", "acked", "nacked", "disabled", "disconnected"]},
            "resource_versions": versions,
            "acked_versions": {"type": "object", "additionalProperties": NULLABLE_STRING},
            "nack": NULLABLE_STRING,
        }
    )
    fleet = {
        "oneOf": [
            {"type": "null"},
            all_required(
                {
                    "workloads": {"type": "array", "items": STRING},
                    "nodes": {"type": "array", "items": node},
                    "connected": INTEGER,
                    "acked": INTEGER,
                    "lagging": {"type": "array", "items": STRING},
                }
            ),
        ],
        "description": "Shared topology only (null in a pod): every node whose workload "
        "should run the integration, with the versions it ACKed or Envoy's NACK text; "
        "`lagging` names the connected nodes not yet running the current versions.",
    }
    return obj(list(required), {**required, "credentials_withheld": withheld, "fleet": fleet})


def _resolution() -> Schema:
    vetted = all_required(
        {
            "mode": {"const": "vetted"},
            "name": STRING,
            "addresses": {
                "type": "array",
                "items": STRING,
                "description": "served to Envoy (the last good set); empty: requests get 503",
            },
            "refused": {
                "type": "array",
                "items": all_required({"address": STRING, "rule": STRING}),
                "description": "addresses of the last answer the SSRF rules refused",
            },
            "ttl": {"type": ["number", "null"]},
            "last_refresh": TIMESTAMP,
            "next_refresh": TIMESTAMP,
            "error": NULLABLE_STRING,
        }
    )
    envoy = all_required({"mode": {"const": "envoy"}, "name": STRING})
    return {
        "description": "who resolves the upstream host name; null for an address or Consul",
        "oneOf": [{"type": "null"}, vetted, envoy],
    }


def _token_status() -> Schema:
    state = all_required(
        {
            "state": {
                "enum": ["pending", "valid", "refreshing", "failing", "expired"],
                "description": "failing: the last refresh failed, the current token is still "
                "injected; expired: no valid token, requests go out without one",
            },
            "injecting": BOOLEAN,
            "token_url": STRING,
            "expires_at": TIMESTAMP,
            "issued_at": TIMESTAMP,
            "last_refresh": TIMESTAMP,
            "source": {"enum": ["idp", "shared", None]},
            "next_refresh": TIMESTAMP,
            "last_error": NULLABLE_STRING,
            "last_error_at": TIMESTAMP,
            "consecutive_failures": INTEGER,
        }
    )
    return {
        "description": "token mode: the brokered OAuth2 token's state (never the token); "
        "null for integrations not in token mode",
        "oneOf": [{"type": "null"}, state],
    }


def _probe_result() -> Schema:
    return all_required(
        {
            "ok": BOOLEAN,
            "latency_ms": NUMBER,
            "step": STRING,
            "detail": STRING,
            "at": {"type": "string", "format": "date-time"},
        }
    )


def _integration_probe() -> Schema:
    probe = _probe_result()
    return all_required(
        {
            "id": STRING,
            "kind": {"enum": list(KINDS)},
            "state": {
                "enum": ["healthy", "unhealthy", "unknown"],
                "description": "the health state after this probe (thresholds applied)",
            },
            **probe["properties"],
        }
    )


def _integration_health() -> Schema:
    envoy = obj(
        ["reachable"],
        {
            "reachable": BOOLEAN,
            "detail": STRING,
            "cluster_known": BOOLEAN,
            "hosts": {
                "type": "array",
                "items": all_required(
                    {
                        "address": STRING,
                        "healthy": BOOLEAN,
                        "health_flags": {"type": "array", "items": STRING},
                    }
                ),
            },
            "outlier": all_required(
                {"ejections_active": NUMBER, "ejections_enforced_total": NUMBER}
            ),
        },
    )
    return all_required(
        {
            "id": STRING,
            "state": {"enum": ["healthy", "unhealthy", "unknown"]},
            "last_probe": {"oneOf": [{"type": "null"}, schema_ref("ProbeResult")]},
            "envoy": envoy,
            "token": schema_ref("TokenStatus"),
        }
    )


def _checks() -> Schema:
    check = obj(["ok"], {"ok": BOOLEAN, "detail": STRING})
    return {"type": "object", "additionalProperties": check}


def _problem() -> Schema:
    item = obj(
        ["pointer", "message"],
        {
            "pointer": {"type": "string", "description": "RFC 6901 JSON pointer"},
            "message": STRING,
            "fix": STRING,
            "file": STRING,
            "line": INTEGER,
            "column": {"type": ["integer", "null"]},
        },
    )
    return obj(
        ["type", "title", "status", "detail"],
        {
            "type": {"type": "string", "description": "a URI naming the problem type"},
            "title": STRING,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": STRING,
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
        "IntegrationList": obj(
            ["items", "total", "limit", "offset"],
            {
                "items": {"type": "array", "items": schema_ref("Integration")},
                "total": INTEGER,
                "limit": INTEGER,
                "offset": INTEGER,
                "next": {"type": "string", "description": "relative URL of the next page"},
            },
        ),
        "XdsTypeStatus": _type_status(),
        "IntegrationStatus": _status(),
        "Resolution": _resolution(),
        "TokenStatus": _token_status(),
        "ProbeResult": _probe_result(),
        "IntegrationProbe": _integration_probe(),
        "IntegrationHealth": _integration_health(),
        "RateBucket": bucket_schema(),
        "RateLimit": rate_limit_schema(),
        "CacheStats": cache_schema(),
        "CacheCleared": cache_clear_schema(),
        "CircuitBreaker": circuit_breaker_schema(),
        "CircuitBreakerReset": reset_schema(),
        "ServiceHealth": all_required(
            {"status": {"enum": ["ok", "degraded"]}, "checks": _checks()}
        ),
        "Readiness": all_required(
            {"status": {"enum": ["ready", "not_ready"]}, "checks": _checks()}
        ),
        "Liveness": all_required({"status": {"const": "live"}, "loop_lag_ms": NUMBER}),
        "Problem": _problem(),
    }
