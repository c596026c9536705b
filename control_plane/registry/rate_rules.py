"""Rate limits: the named rules of ``config/rate_limits.yaml`` and an integration's
``policies.rate_limit`` resolved against them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from control_plane.model import RateBucket, RateLimit
from control_plane.problems import Problem, RegistryError
from control_plane.registry.durations import parse_duration
from control_plane.registry.schema import rate_limits_schema
from control_plane.registry.validation import schema_problems
from control_plane.registry.yamlmarks import MarkedDocument, load_marked

__all__ = [
    "GLOBAL_UNITS",
    "RateRules",
    "global_unit_problems",
    "load_rate_limits",
    "resolve_rate_limit",
]

RateRules = Mapping[str, RateLimit]


def _bucket(raw: Mapping[str, Any]) -> RateBucket:
    requests = int(raw["requests"])
    return RateBucket(
        requests=requests,
        per=parse_duration(raw.get("per", "1s")),
        burst=int(raw.get("burst", requests)),
    )


def resolve_rate_limit(raw: Mapping[str, Any], rules: RateRules) -> RateLimit:
    """An integration's rate limit: its own bucket, or its rule's with overrides."""
    base = rules.get(raw["rule"]) if "rule" in raw else None
    if base is not None and "requests" not in raw:
        bucket = base.bucket
    else:
        merged = {"requests": base.bucket.requests, "burst": base.bucket.burst} if base else {}
        merged.update({k: raw[k] for k in ("requests", "per", "burst") if k in raw})
        bucket = _bucket(merged)
    per_tenant = dict(base.per_tenant) if base else {}
    per_tenant.update({t: _bucket(b) for t, b in raw.get("per_tenant", {}).items()})
    return RateLimit(
        bucket=bucket,
        rule=raw.get("rule"),
        tenant_header=raw.get("tenant_header", base.tenant_header if base else "x-tenant-id"),
        per_tenant=per_tenant,
        scope=raw.get("scope", base.scope if base else "pod"),
        failure_mode=raw.get("failure_mode", base.failure_mode if base else "open"),
        response_headers=bool(
            raw.get("response_headers", base.response_headers if base else False)
        ),
    )


def load_rate_limits(path: Path) -> dict[str, RateLimit]:
    """Named token-bucket rules from ``config/rate_limits.yaml`` (missing file: none)."""
    if not path.exists():
        return {}
    doc = load_marked(path.read_text(encoding="utf-8"), str(path))
    problems = list(doc.problems) or schema_problems(doc, rate_limits_schema())
    if problems:
        raise RegistryError(problems, f"{path} is invalid")
    rules: dict[str, RateLimit] = {}
    for name, raw in (doc.data or {}).get("rules", {}).items():
        rules[name] = RateLimit(
            bucket=_bucket(raw),
            rule=name,
            tenant_header=raw.get("tenant_header", "x-tenant-id"),
            per_tenant={t: _bucket(b) for t, b in raw.get("per_tenant", {}).items()},
            scope=raw.get("scope", "pod"),
            failure_mode=raw.get("failure_mode", "open"),
            response_headers=bool(raw.get("response_headers", False)),
        )
    return rules


# envoyproxy/ratelimit counts in whole units: requests_per_unit per second/minute/hour/day.
GLOBAL_UNITS = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
# A global tenant name becomes a descriptor value sent to the rate-limit service and part of
# a Redis key there: bounded, and plain (docs/security.md, "Global quotas").
GLOBAL_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def global_unit_problems(
    doc: MarkedDocument, raw: Mapping[str, Any], rules: RateRules, path: tuple[str | int, ...]
) -> list[Problem]:
    """A global quota's windows must be whole units the rate-limit service counts in."""
    try:
        limit = resolve_rate_limit(raw, rules)
    except (KeyError, ValueError, TypeError):
        return []  # the schema reports it
    if limit.scope != "global":
        return []
    buckets = {"": limit.bucket, **{f"per_tenant/{t}": b for t, b in limit.per_tenant.items()}}
    problems = [
        doc.problem(
            (*path, "rate_limit", "per_tenant", tenant),
            f"tenant {tenant[:80]!r} cannot name a global quota",
            "use at most 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
        for tenant in limit.per_tenant
        if not GLOBAL_TENANT.fullmatch(tenant)
    ]
    for where, bucket in buckets.items():
        if bucket.per not in GLOBAL_UNITS:
            pointer: tuple[str | int, ...] = (*path, "rate_limit", *where.split("/"), "per")
            problems.append(
                doc.problem(
                    tuple(p for p in pointer if p != ""),
                    f"scope global counts per second, minute, hour or day; per is {bucket.per:g}s",
                    "write per: 1s, 1m, 1h or 1d (and requests for that window)",
                )
            )
    return problems
