"""Before/after in one run (issue 20).  ``python -m bench.compare --base REV``

The machine moves absolute figures by 2-3x between runs, so the issue's targets are ratios
measured in one run. This exports commit ``REV`` (``git archive``, into a temporary
directory) and runs the same measurements on it and on this tree, one after the other:
``bench.run --only live --only scale`` (B4 propagation, B6 management API, B5 scale and
the control plane's cold start) and ``bench.footprint`` (per-pod RSS beside Envoy's). Each
tree runs its own code (its directory first on ``PYTHONPATH`` and as the working
directory); ``bench.footprint`` is this tree's, pointed at the other tree. Writes the
figures as JSON (``--json``) and prints a Markdown table of before, after and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import ROOT

__all__ = ["figures", "main"]


def _export(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _run(tree: Path, out: Path, phases: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    only = [a for p in phases for a in ("--only", p)]
    subprocess.run(
        [sys.executable, "-m", "bench.run", *only, "--out", str(out / "run")],
        cwd=tree,
        env=env,
        check=True,
        timeout=1800,
    )
    results: dict[str, Any] = json.loads((out / "run" / "results.json").read_text())
    foot = out / "footprint.json"
    subprocess.run(
        [sys.executable, "-m", "bench.footprint", "--tree", str(tree), "--json", str(foot)],
        cwd=ROOT,
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    results["footprint"] = json.loads(foot.read_text())
    return results


def figures(r: dict[str, Any]) -> dict[str, float]:
    """The figures the issue sets targets on, from one tree's results."""
    out: dict[str, float] = {}
    live = r.get("live")
    if live:
        b4, b6 = live["b4"], live["b6"]
        out |= {"b4_p50_ms": b4["p50_ms"], "b4_p99_ms": b4["p99_ms"]}
        out["b4_p99_over_p50"] = b4["p99_ms"] / b4["p50_ms"]
        for name in ("list", "get"):
            out |= {f"{name}_rps": b6[name]["rps"], f"{name}_p50_ms": b6[name]["p50_us"] / 1000}
            out[f"{name}_p99_ms"] = b6[name]["p99_us"] / 1000
        out["list_p99_over_p50"] = out["list_p99_ms"] / out["list_p50_ms"]
    scale = r.get("scale") or {}
    for n, row in scale.get("translate", {}).items():
        out[f"translate_snapshot_{n}_s"] = row["total_s"]
        out[f"translate_snapshot_per_integration_{n}_us"] = row["total_s"] / int(n) * 1e6
        if "reference_s" in row:
            out[f"translate_over_reference_{n}"] = row["total_s"] / row["reference_s"]
        service = scale.get("service", {}).get(n)
        if service:
            out[f"cold_start_{n}_s"] = service["first_snapshot_s"]
            out[f"cold_start_over_translate_{n}"] = service["first_snapshot_s"] / row["total_s"]
            out[f"cp_rss_at_first_snapshot_{n}_mib"] = service["rss_bytes"] / 2**20
    foot = r.get("footprint") or {}
    if foot:
        out["cp_rss_mib"] = foot["control_plane_rss_bytes"] / 2**20
        out["envoy_rss_mib"] = foot["envoy_rss_bytes"] / 2**20
    return out


def markdown(result: dict[str, Any]) -> str:
    before, after = figures(result["base"]), figures(result["head"])
    lines = [
        f"| figure | before ({result['base_rev']}) | after | after ÷ before |",
        "|---|---:|---:|---:|",
    ]
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        ratio = f"{a / b:.2f}" if a is not None and b else ""
        fb = f"{b:,.2f}" if b is not None else "-"
        fa = f"{a:,.2f}" if a is not None else "-"
        lines.append(f"| {key} | {fb} | {fa} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("--base", required=True, help="the commit to compare against")
    p.add_argument("--phases", nargs="*", default=["live", "scale"])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as name:
        tmp = Path(name)
        base = _export(args.base, tmp / "base")
        result: dict[str, Any] = {"base_rev": rev}
        for label, tree in (("base", base), ("head", ROOT)):
            print(f"[compare] {label}: {tree}", file=sys.stderr, flush=True)
            result[label] = _run(tree, tmp / f"out-{label}", args.phases)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
