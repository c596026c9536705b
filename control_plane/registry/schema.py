"""JSON Schema (Draft 2020-12) for integration documents and files.

The core schema is fixed here; each adapter contributes the schema of its ``settings``
block, merged with ``if kind == X then settings: <adapter schema>`` so that an error in a
settings block is reported against the right kind.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from adapters import ADAPTERS
from control_plane.model import KINDS

__all__ = [
    "DURATION_PATTERN",
    "file_schema",
    "integration_schema",
    "rate_limits_schema",
]

DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)(?!\n)$"
_CREDENTIAL_REF = r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)(?!\n)$"
_DURATION: dict[str, Any] = {
    "description": "a duration such as 250ms, 10s, 2m, or a number of seconds",
    "oneOf": [
        {"type": "string", "pattern": DURATION_PATTERN},
        # Envoy's Duration tops out at 10,000 years (protobuf Duration's range).
        {"type": "number", "exclusiveMinimum": 0, "maximum": 315_576_000_000},
    ],
}
_PORT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 65535}
_REF: dict[str, Any] = {"type": "string", "pattern": _CREDENTIAL_REF}
_POSITIVE: dict[str, Any] = {"type": "integer", "minimum": 1}
# Envoy carries circuit-breaker limits and outlier thresholds as UInt32Value.
_U32_POSITIVE: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 4_294_967_295}

_BUCKET: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["requests"],
    "properties": {
        "requests": {"type": "integer", "minimum": 1, "description": "tokens added per 'per'"},
        "per": _DURATION,
        "burst": {"type": "integer", "minimum": 1, "description": "bucket size"},
    },
}

_TLS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean"},
        "verify": {"type": "boolean"},
        "sni": {"type": "string", "minLength": 1},
        "ca_bundle": _REF,
        "client_cert": _REF,
        "client_key": _REF,
    },
}

_UPSTREAM: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "pattern": r"^(https?|tcp|tls)://", "description": "upstream URL"},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "pattern": r"^(https?|tcp|tls)://"},
                "host": {"type": "string", "minLength": 1},
                "port": _PORT,
                "scheme": {"enum": ["http", "https", "tcp", "tls"]},
                "tls": _TLS,
                "discovery": {"enum": ["dns", "static", "consul"]},
                "consul_service": {"type": "string", "minLength": 1},
                "resolution": {
                    "enum": ["vetted", "envoy"],
                    "description": "who resolves a host name: the control plane, serving only "
                    "addresses the SSRF rules accept (vetted; the default for API "
                    "registrations, the only choice there), or Envoy (envoy; the default for "
                    "declared integrations)",
                },
            },
            "anyOf": [{"required": ["url"]}, {"required": ["host"]}],
        },
    ]
}

# Where a quota holds (docs/rate-limits.md): each Envoy (pod), shared by the live members of
# the fleet (fleet: Envoy's local_cluster_rate_limit), or exactly across the fleet (global:
# envoyproxy/ratelimit with Redis).
_RATE_SCOPE: dict[str, Any] = {
    "scope": {
        "enum": ["pod", "fleet", "global"],
        "description": "pod: each Envoy has the whole bucket (the default); fleet: the "
        "bucket is divided among the live members of the fleet; global: one exact count "
        "across the fleet (envoyproxy/ratelimit)",
    },
    "failure_mode": {
        "enum": ["open", "closed"],
        "description": "global scope: when the rate-limit service cannot answer, let the "
        "request through (open, the default) or refuse it (closed)",
    },
    "response_headers": {
        "type": "boolean",
        "description": "add x-ratelimit-limit/-remaining/-reset to responses to the app",
    },
}

_POLICIES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "timeout": _DURATION,
        "connect_timeout": _DURATION,
        "idle_timeout": {
            "description": "TCP kinds: how long a connection may idle before Envoy closes it "
            "(default per kind), or never",
            "anyOf": [_DURATION, {"const": "never"}],
        },
        "retries": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
                "per_try_timeout": _DURATION,
                "retry_on": {"type": "array", "items": {"type": "string"}},
                "retriable_status_codes": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 100, "maximum": 599},
                },
                "retry_after_max": _DURATION,
            },
        },
        "rate_limit": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "rule": {"type": "string", "minLength": 1},
                "requests": {"type": "integer", "minimum": 1},
                "per": _DURATION,
                "burst": {"type": "integer", "minimum": 1},
                "tenant_header": {"type": "string", "pattern": "^[a-z0-9-]+(?!\n)$"},
                "per_tenant": {"type": "object", "additionalProperties": _BUCKET},
                **_RATE_SCOPE,
            },
            "anyOf": [{"required": ["rule"]}, {"required": ["requests"]}],
        },
        "circuit_breaker": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_connections": _U32_POSITIVE,
                "max_pending_requests": _U32_POSITIVE,
                "max_requests": _U32_POSITIVE,
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 4_294_967_295},
            },
        },
        "outlier_detection": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "consecutive_5xx": _U32_POSITIVE,
                "consecutive_gateway_failure": _U32_POSITIVE,
                "interval": _DURATION,
                "base_ejection_time": _DURATION,
                "max_ejection_time": _DURATION,
                "max_ejection_percent": {"type": "integer", "minimum": 0, "maximum": 100},
            },
        },
        "cache": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "max_entry_bytes": _POSITIVE,
                "max_total_bytes": _POSITIVE,
            },
        },
    },
}


def _integration_core() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "kind", "upstream"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(?!\n)$",
                "description": "DNS label: lowercase letters, digits and '-', at most 63",
            },
            "kind": {"enum": list(KINDS)},
            "tenant": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,64}(?!\n)$"},
            "description": {"type": "string", "maxLength": 500},
            "enabled": {"type": "boolean"},
            "labels": {
                "type": "object",
                "propertyNames": {"pattern": r"^[A-Za-z0-9._/-]{1,63}(?!\n)$"},
                "additionalProperties": {"type": "string", "maxLength": 63},
            },
            "upstream": _UPSTREAM,
            "listen_port": _PORT,
            "credentials": {
                "type": "object",
                "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*(?!\n)$"},
                "additionalProperties": _REF,
            },
            "policies": _POLICIES,
            "settings": {"type": "object"},
            "workloads": {
                "type": "array",
                "maxItems": 256,
                "items": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(?!\n)$"},
                "description": "shared topology: the workloads of its tenant that may run it "
                "(absent or empty: every workload of its tenant)",
            },
            # Read-only metadata the API returns; accepted and ignored on input so a GET
            # document can be PUT back unchanged.
            "version": {"type": "integer"},
            "source": {"enum": ["declared", "registered"]},
            "created_at": {"type": ["string", "null"]},
            "updated_at": {"type": ["string", "null"]},
        },
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {
                    "properties": {
                        "settings": dict(spec.settings_schema),
                        "credentials": {"propertyNames": {"enum": sorted(spec.credentials)}}
                        if spec.credentials
                        else {"maxProperties": 0},
                    }
                },
            }
            for kind, spec in sorted(ADAPTERS.items())
        ],
    }


@functools.cache
def integration_schema() -> Mapping[str, Any]:
    """Schema of one integration document (API body or one item of the file)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://integration-service.dev/schemas/integration.json",
        **_integration_core(),
    }


@functools.cache
def file_schema() -> Mapping[str, Any]:
    """Schema of ``config/integrations.yaml``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://integration-service.dev/schemas/integrations-file.json",
        "type": "object",
        "additionalProperties": False,
        "required": ["integrations"],
        "properties": {
            "integrations": {"type": "array", "items": _integration_core()},
        },
    }


@functools.cache
def rate_limits_schema() -> Mapping[str, Any]:
    """Schema of ``config/rate_limits.yaml``: named token-bucket rules."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["rules"],
        "properties": {
            "rules": {
                "type": "object",
                "propertyNames": {"pattern": r"^[a-z0-9][a-z0-9_-]*(?!\n)$"},
                "additionalProperties": {
                    **_BUCKET,
                    "properties": {
                        **_BUCKET["properties"],
                        "tenant_header": {"type": "string"},
                        "per_tenant": {"type": "object", "additionalProperties": _BUCKET},
                        **_RATE_SCOPE,
                    },
                },
            }
        },
    }
