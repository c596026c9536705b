"""Where the fault suite writes what it measured: one JSON file, merged per test.

The file is ``$RELIABILITY_REPORT`` or ``<repo>/.reliability.json`` (ignored by git). Each
fault test stores its figures under its fault key; a later run of the same test replaces
that entry and leaves the others alone, so a partial run keeps earlier results.
``python -m tests.e2e.faults.report`` renders the file as ``docs/reliability.md``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["REPO", "Figures", "ledger_path", "read_ledger", "write_entry"]

REPO = Path(__file__).resolve().parents[3]
ENV = "RELIABILITY_REPORT"

#: Measured values by name: counts, milliseconds, versions, booleans.
Figures = dict[str, Any]


def ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    raw = env.get(ENV)
    return Path(raw) if raw else REPO / ".reliability.json"


def read_ledger(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {"faults": {}}
    if not isinstance(data, dict) or not isinstance(data.get("faults"), dict):
        return {"faults": {}}
    return data


def write_entry(path: Path, fault: str, entry: Mapping[str, Any]) -> None:
    """Merge ``entry`` as the result of ``fault`` (under a lock: tests may run in parallel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        data = read_ledger(path)
        data["faults"][fault] = {
            **entry,
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        data["updated_at"] = data["faults"][fault]["recorded_at"]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
