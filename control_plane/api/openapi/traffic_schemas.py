"""Component schemas of the traffic endpoints: rate limit, cache, circuit breaker."""

from __future__ import annotations

from control_plane.api.openapi.schema_parts import (
    BOOLEAN,
    INTEGER,
    NULLABLE_STRING,
    NUMBER,
    STRING,
    Schema,
    all_required,
    schema_ref,
)
from control_plane.sidecar.admin import CIRCUIT_BREAKER_GAUGES

__all__ = [
    "bucket_schema",
    "cache_clear_schema",
    "cache_schema",
    "circuit_breaker_schema",
    "rate_limit_schema",
    "reset_schema",
]


def bucket_schema() -> Schema:
    return all_required({"requests": INTEGER, "per_s": NUMBER, "burst": INTEGER})


def rate_limit_schema() -> Schema:
    configured = all_required(
        {
            "rule": NULLABLE_STRING,
            "bucket": schema_ref("RateBucket"),
            "tenant_header": NULLABLE_STRING,
            "per_tenant": {"type": "object", "additionalProperties": schema_ref("RateBucket")},
        }
    )
    return all_required(
        {
            "id": STRING,
            "configured": {"oneOf": [{"type": "null"}, configured]},
            "counters": all_required(
                {"allowed": NUMBER, "limited": NUMBER, "enabled": NUMBER, "enforced": NUMBER}
            ),
            "limited_per_s": NUMBER,
            "window_s": NUMBER,
            "last_minute": all_required({"allowed": NUMBER, "limited": NUMBER, "seconds": NUMBER}),
            "scope": {
                "oneOf": [{"type": "null"}, {"enum": ["pod", "fleet", "global"]}],
                "description": "where the quota holds (docs/rate-limits.md); null: no limit",
            },
            "share": {
                "type": ["object", "null"],
                "description": "this pod's share of the bucket: `members` of the fleet and "
                "the `fraction` each takes (1 for pod and global); in the shared topology, "
                "per workload",
            },
            "fleet": {
                "type": ["object", "null"],
                "description": "scope fleet: the membership's source and health and the "
                "fleet's Envoy counters summed over live members (`counters`, null with "
                "`counters_unavailable` saying why)",
            },
            "global": {
                "type": ["object", "null"],
                "description": "scope global: `limit`, `used` and `remaining` in the current "
                "`window`, for the integration and `per_tenant`, read from the Redis "
                "envoyproxy/ratelimit counts in (`error` when it cannot answer)",
            },
        }
    )


def cache_schema() -> Schema:
    schema = all_required(
        {
            "id": STRING,
            "enabled": BOOLEAN,
            "generation": INTEGER,
            "hits": INTEGER,
            "misses": INTEGER,
            "stored": INTEGER,
            "hit_ratio": {"type": ["number", "null"]},
            "entries": NUMBER,
            "bytes": NUMBER,
            "path": STRING,
        }
    )
    schema["properties"]["bypassed"] = {
        "type": "integer",
        "description": "requests the cache filter did not consider (e.g. not cacheable)",
    }
    schema["properties"]["disk"] = all_required(
        {"files": INTEGER, "bytes": INTEGER},
        description="files and bytes actually in the cache directory",
    )
    return schema


def cache_clear_schema() -> Schema:
    schema = all_required(
        {
            "id": STRING,
            "generation": INTEGER,
            "snapshot_version": NULLABLE_STRING,
            "cleared_path": STRING,
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


def circuit_breaker_schema() -> Schema:
    gauges = CIRCUIT_BREAKER_GAUGES
    return all_required(
        {
            "id": STRING,
            "state": {"enum": ["closed", "open", "half_open"]},
            "thresholds": all_required(
                {
                    "max_connections": INTEGER,
                    "max_pending_requests": INTEGER,
                    "max_requests": INTEGER,
                    "max_retries": INTEGER,
                }
            ),
            "outlier_detection": all_required(
                {
                    "enabled": BOOLEAN,
                    "consecutive_5xx": INTEGER,
                    "base_ejection_time_s": NUMBER,
                    "max_ejection_percent": INTEGER,
                    "ejections_active": NUMBER,
                    "ejections_enforced_total": NUMBER,
                }
            ),
            "gauges": all_required({g: NUMBER for g in gauges}),
            "overflow": all_required(
                {
                    "upstream_cx_overflow": NUMBER,
                    "upstream_rq_pending_overflow": NUMBER,
                    "upstream_rq_retry_overflow": NUMBER,
                }
            ),
            "hosts": {
                "type": "array",
                "items": all_required(
                    {
                        "address": STRING,
                        "health_flags": {"type": "array", "items": STRING},
                        "failed_outlier_check": BOOLEAN,
                    }
                ),
            },
            "generation": INTEGER,
        }
    )


def reset_schema() -> Schema:
    return all_required(
        {
            "id": STRING,
            "generation": INTEGER,
            "snapshot_version": STRING,
            "acked": {
                "type": "boolean",
                "description": "Envoy ACKed the rebuilt cluster within 5 s (else 202)",
            },
        }
    )
