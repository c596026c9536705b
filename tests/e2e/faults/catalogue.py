"""The faults the suite injects, and what the service promises under each.

The report renders one row per entry, in this order; the key is what a test records under.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAULTS", "Fault"]


@dataclass(frozen=True, slots=True)
class Fault:
    title: str
    expected: str
    test: str


FAULTS: dict[str, Fault] = {
    "control_plane_sigkill": Fault(
        "Control plane SIGKILLed under steady traffic (PostgreSQL + Redis, Envoy beside it)",
        "Envoy keeps serving its last good config: zero failed requests. The restarted "
        "control plane reconverges to the same snapshot version; no event is published twice.",
        "test_control_plane_kill.py",
    ),
    "control_plane_sigkill_port0": Fault(
        "Control plane SIGKILLed under steady traffic with `xds_port: 0` (embedded Envoy)",
        "The restart binds the xDS port of the previous run again (kept in "
        "`<data_dir>/xds-port`) and adopts the running Envoy: same pid, zero failed requests.",
        "test_control_plane_kill_port0.py",
    ),
    "envoy_sigkill": Fault(
        "Envoy killed (kill -9 of the pid in `<data_dir>/envoy/envoy.pid`, embedded mode)",
        "The supervisor restarts Envoy, which reconverges to the current version; "
        "`/health/ready` answers 503 in between and 200 after. Envoy is the data path: "
        "requests through the sidecar fail only until the new Envoy has its listeners.",
        "test_envoy_kill.py",
    ),
    "postgres_outage": Fault(
        "PostgreSQL stopped (control plane on POSTGRESQL_URL)",
        "Reads (`GET /integrations`, `/integrations/{id}/status`) keep working from memory; "
        "writes answer 503 problem+json with `Retry-After`; nothing is half written; a write "
        "succeeds again once PostgreSQL is back, without restarting the control plane.",
        "test_postgres_outage.py",
    ),
    "redis_outage": Fault(
        "Redis stopped (control plane on REDIS_URL)",
        "Mutations still succeed; their events wait in the outbox and all are published, "
        "each once, after Redis returns.",
        "test_redis_outage.py",
    ),
    "upstream_slow": Fault(
        "Upstream slow (answers after 5 s, route timeout 1 s)",
        "Envoy's route timeout bounds the latency: 504 after about the timeout.",
        "test_upstream_faults.py",
    ),
    "upstream_down": Fault(
        "Upstream down (nothing listens on its port)",
        "Fail fast: 503 from Envoy within milliseconds, no hang.",
        "test_upstream_faults.py",
    ),
    "upstream_flapping": Fault(
        "Upstream flapping (5xx bursts, outlier detection with short times)",
        "The host is ejected after consecutive 5xx (requests fail fast without reaching it) "
        "and returns after `base_ejection_time`.",
        "test_upstream_faults.py",
    ),
    "invalid_registry_file": Fault(
        "Invalid `integrations.yaml` written while running",
        "Rejected; the last good registry stays in force (Envoy keeps serving it); the error "
        "is in `/health` (`registry.file_error`) and in the log.",
        "test_bad_config.py",
    ),
    "access_log_cap": Fault(
        "Access logs under load with a small cap (64 KiB, checked every 0.5 s), then a "
        "control-plane SIGKILL",
        "Each file stays under the cap plus one check interval's writes (renamed, Envoy "
        "reopens, the renamed file is counted and deleted; at most one rotated file); the "
        "cache hit/miss counts stay exact, also after the restart.",
        "test_access_log_cap.py",
    ),
    "yaml_alias_bomb": Fault(
        "A YAML alias bomb (a few hundred bytes of nested anchors) written to "
        "`integrations.yaml` while running",
        "Refused within the YAML bounds before anything walks it (no memory blow-up, the "
        "event loop keeps answering); the last good registry stays in force; the error names "
        "the line; `validate` exits 2 the same way.",
        "test_bad_config.py",
    ),
    "replicas_postgres_only": Fault(
        "Two replicas on one PostgreSQL without Redis, each with its own Envoy",
        "They stay in step through PostgreSQL LISTEN/NOTIFY (a periodic full re-read as a "
        "safety net): a change through either reaches the other's Envoy within seconds; "
        "`/health` reports the sync mode and whether its listener is connected.",
        "test_replicas_postgres_only.py",
    ),
    "port_clash_replicas": Fault(
        "Listen-port clashes across two replicas on one PostgreSQL and Redis (a replica's own "
        "API/admin port, a port registered through the other replica, one port claimed "
        "through both at once)",
        "Refused before anything is stored: 422 for a port Envoy could never bind, 409 for a "
        "port another integration holds in the shared store (exactly one of two racing "
        "claims wins); no Envoy NACKs, both replicas stay ready with the same listeners.",
        "test_port_clash.py",
    ),
    "envoy_nack": Fault(
        "A configuration Envoy rejects (listener on a port already taken)",
        "NACK recorded with Envoy's error; Envoy keeps serving the previous config; no push loop.",
        "test_bad_config.py",
    ),
    "sigterm_graceful": Fault(
        "SIGTERM with an API request in flight (embedded Envoy, fake Consul)",
        "Graceful: the in-flight request completes 200, the instance is deregistered from "
        "Consul, Envoy is drained and stopped, exit code 0.",
        "test_sigterm.py",
    ),
}
