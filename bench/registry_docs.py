"""Integration documents for the benchmarks (the shape users write in integrations.yaml).

Every benchmark integration is an ``http`` integration to a loopback upstream with the
policies the issue names: a rate limit, circuit-breaker limits and outlier detection, all set
so that none of them triggers under the benchmark's load; retries off, so that the sidecar
and the Python proxy do the same work per request (the Python proxy does not retry).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import yaml

__all__ = ["document", "free_ports", "integrations_yaml"]


def document(ident: str, upstream_port: int, listen_port: int) -> dict[str, Any]:
    return {
        "id": ident,
        "kind": "http",
        "description": "benchmark integration",
        "labels": {"bench": "true"},
        "upstream": f"http://127.0.0.1:{upstream_port}",
        "listen_port": listen_port,
        "policies": {
            "timeout": "15s",
            "retries": {"max_retries": 0},
            "rate_limit": {"requests": 100000, "per": "1s", "burst": 100000},
            "circuit_breaker": {
                "max_connections": 1024,
                "max_pending_requests": 1024,
                "max_requests": 1024,
            },
            "outlier_detection": {
                "consecutive_5xx": 5,
                "interval": "10s",
                "base_ejection_time": "30s",
            },
        },
    }


def integrations_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"integrations": documents}, sort_keys=False)


def free_ports(count: int, start: int = 20000, stop: int = 32000) -> list[int]:
    """``count`` loopback ports below the ephemeral range that are free right now."""
    ports: list[int] = []
    for port in range(start, stop):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            with contextlib.suppress(OSError):
                sock.bind(("127.0.0.1", port))
                ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"only {len(ports)} free ports in {start}-{stop}")
