"""The cost of one log record as the number of registered secrets grows.

``python -m bench.scrub [--tree DIR]... [--secrets 0 100 1000 10000] [--json FILE]``: in a
child process per tree (``--tree`` measures another checkout, e.g. an exported base commit,
beside this one), the service's own ``configure_logging`` (JSON lines, written to
``/dev/null``), N registered secrets (random 32-character API-key-like values, as the
registry registers each resolved credential), then the median over 5 rounds of 2,000
records of the management API's per-request line (``request`` with method, path, status
and duration) and of ``scrub`` alone on that line. Every registered secret is masked in
every line; the question is what checking for them costs when there are many.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROUNDS, RECORDS = 5, 2000

__all__ = ["main", "measure"]


def measure(count: int) -> dict[str, Any]:
    import logging
    import os
    import secrets

    from control_plane.observability.logging import configure_logging, register_secret, scrub

    sys.stderr = open(os.devnull, "w")  # the handler's stream, for the run
    configure_logging("INFO", "json")
    for _ in range(count):
        register_secret("sk_live_" + secrets.token_hex(12))
    log = logging.getLogger("control_plane.api.middleware")
    extra = {"method": "GET", "path": "/integrations/int-00007", "status": 200}
    line = json.dumps({"message": "request", **extra, "duration_ms": 0.61})
    scrub(line)  # the first scrub after the registrations builds what it needs
    record_us, scrub_us = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(RECORDS):
            log.info("request", extra={**extra, "duration_ms": 0.61})
        record_us.append((time.perf_counter() - started) / RECORDS * 1e6)
        started = time.perf_counter()
        for _ in range(RECORDS):
            scrub(line)
        scrub_us.append((time.perf_counter() - started) / RECORDS * 1e6)
    return {
        "secrets": count,
        "record_us": statistics.median(record_us),
        "scrub_us": statistics.median(scrub_us),
    }


def markdown(runs: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "## Log records and registered secrets (issue 20)",
        "",
        "`python -m bench.scrub` (method in its docstring): µs per record, median of "
        f"{ROUNDS} rounds of {RECORDS:,}.",
        "",
        "| tree | registered secrets | one request's log record µs | scrub of its line µs |",
        "|---|---:|---:|---:|",
    ]
    for tree, rows in runs.items():
        for row in rows:
            lines.append(
                f"| {tree} | {row['secrets']:,} | {row['record_us']:.1f} | {row['scrub_us']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scrub", description=__doc__)
    p.add_argument("--tree", type=Path, action="append", help="a checkout (repeatable)")
    p.add_argument("--secrets", type=int, nargs="+", default=[0, 100, 1000, 10000])
    p.add_argument("--json", type=Path)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child)), file=sys.__stdout__)
        return 0
    from bench.procs import run_in_trees  # not at the top: a child may run a base tree's bench

    runs = run_in_trees(__file__, args.tree, [["--child", str(n)] for n in args.secrets])
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
