"""Write ``RESULTS.md``, ``results.json`` and the plots from one run's results."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

PATHS = ("direct", "sidecar", "python")
ALL_PATHS = (*PATHS, "bare")
LABELS = {
    "direct": "direct",
    "sidecar": "sidecar (Envoy)",
    "python": "Python proxy",
    "bare": "bare Envoy (reference)",
}
COLORS = {"direct": "#555555", "sidecar": "#1f77b4", "python": "#d62728", "bare": "#17becf"}


def _us(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.1f} ms"
    return f"{value:,.0f} µs"


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.1f} ms"


def _num(value: float, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _bytes(value: float) -> str:
    if value >= 2**20:
        return f"{value / 2**20:,.1f} MiB"
    if value >= 1024:
        return f"{value / 1024:,.1f} KiB"
    return f"{value:,.0f} B"


def _ratio(a: float, b: float) -> str:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a / b:,.1f}x"


def _pipeline_cell(seconds: float | None, worst: float | None = None) -> str:
    if seconds is None:
        return "n/a"
    cell = _ms(1000 * seconds)
    return cell if worst is None else f"{cell} ({_ms(1000 * worst)})"


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


# -- plots --------------------------------------------------------------------------------


def _plots(results: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: list[tuple[str, str]] = []
    plt.rcParams.update({"font.size": 8, "figure.dpi": 80})

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        plots.append((name, title))

    dp = results.get("data_path")
    if dp:
        dist = dp["b1"]["distributions"]
        rates = sorted({int(k.split("@")[1]) for k in dist})
        fig, axes = plt.subplots(1, len(rates), figsize=(4 * len(rates), 3.4), sharey=True)
        axes = list(axes) if len(rates) > 1 else [axes]
        quantiles = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995]
        for ax, rate in zip(axes, rates, strict=True):
            for path in ALL_PATHS:
                values = dist.get(f"{path}@{rate}", [])
                if not values:
                    continue
                xs, ys = [], []
                for q in quantiles:
                    xs.append(1 / (1 - q))
                    ys.append(values[min(len(values) - 1, int(q * len(values)))])
                ax.plot(
                    xs,
                    ys,
                    marker="o",
                    ms=3,
                    label=LABELS[path],
                    color=COLORS[path],
                    ls="--" if path == "bare" else "-",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks([1, 2, 10, 100, 1000])
            ax.set_xticklabels(["p0", "p50", "p90", "p99", "p99.9"])
            ax.set_title(f"{rate} req/s (open loop, round 1)")
            ax.set_xlabel("percentile")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        axes[0].set_ylabel("latency from intended send (µs)")
        save(fig, "b1_latency.png", "B1 latency distributions by path and rate")

        summary = dp["b1"]["summary"]
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for ax, key in zip(axes, ("p50", "p99"), strict=True):
            width = 0.38
            xs = list(range(len(summary)))
            for offset, proxy in ((-width / 2, "sidecar"), (width / 2, "python")):
                values = [max(1.0, summary[r][f"{proxy}_overhead"][key]) for r in summary]
                ax.bar(
                    [x + offset for x in xs],
                    values,
                    width,
                    label=LABELS[proxy],
                    color=COLORS[proxy],
                )
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{r} req/s" for r in summary])
            ax.set_yscale("log")
            ax.set_ylabel(f"{key} overhead over direct (µs)")
            ax.grid(True, axis="y", which="both", alpha=0.3)
        axes[0].legend()
        save(fig, "b1_overhead.png", "B1 overhead over direct (median of rounds)")

        fig, ax = plt.subplots(figsize=(5, 3))
        xs = list(range(len(summary)))
        for offset, proxy in ((-0.19, "sidecar"), (0.19, "python")):
            values = [summary[r][proxy]["cores_per_krps"] for r in summary]
            ax.bar([x + offset for x in xs], values, 0.38, label=LABELS[proxy], color=COLORS[proxy])
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{r} req/s" for r in summary])
        ax.set_ylabel("CPU cores per 1,000 req/s")
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
        save(fig, "b2_cpu.png", "B2 CPU cost per 1,000 req/s")

        timelines = dp["b3"]["timelines"]
        fig, axes = plt.subplots(1, len(timelines), figsize=(8, 3.2), sharey=True)
        axes = list(axes) if len(timelines) > 1 else [axes]
        for ax, (name, points) in zip(axes, timelines.items(), strict=True):
            window = [p for p in points if -100 <= p[0] <= 400]
            for reached, color, label in (
                (1, "#ff7f0e", "reached upstream"),
                (0, "#2ca02c", "rejected locally"),
            ):
                pts = [p for p in window if p[2] == reached]
                ax.scatter(
                    [p[0] for p in pts], [max(1, p[1]) for p in pts], s=4, color=color, label=label
                )
            ax.axvline(0, color="black", lw=0.8, ls="--")
            ax.set_yscale("log")
            ax.set_title(LABELS[name])
            ax.set_xlabel("ms since the upstream's first failure")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("response time (µs)")
        axes[0].legend(markerscale=3)
        save(fig, "b3_failfast.png", "B3 upstream fails under 1,000 req/s")

    live = results.get("live")
    push = results.get("push")
    if live or push:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        if live:
            samples = sorted(live["b4"]["samples_ms"])
            axes[0].plot(samples, [(i + 1) / len(samples) for i in range(len(samples))])
            axes[0].axvline(250, color="red", lw=0.8, ls="--", label="target p99 250 ms")
            axes[0].set_xlabel("REST change -> first request on the new config (ms)")
            axes[0].set_ylabel("fraction of changes")
            axes[0].set_title(f"{live['b4']['integrations']} integrations, {len(samples)} changes")
            axes[0].legend()
            axes[0].grid(True, alpha=0.3)
        if push:
            sizes = list(push)
            xs = list(range(len(sizes)))
            for offset, mode, color in ((-0.19, "delta", "#1f77b4"), (0.19, "sotw", "#9467bd")):
                axes[1].bar(
                    [x + offset for x in xs],
                    [push[n][mode]["change_bytes"] for n in sizes],
                    0.38,
                    label=mode,
                    color=color,
                )
            axes[1].set_xticks(xs)
            axes[1].set_xticklabels([f"{n} integrations" for n in sizes])
            axes[1].set_yscale("log")
            axes[1].set_ylabel("bytes pushed for one change")
            axes[1].legend()
            axes[1].grid(True, axis="y", which="both", alpha=0.3)
        save(fig, "b4_propagation.png", "B4 propagation and bytes per change")

    scale = results.get("scale")
    if scale:
        tr = scale["translate"]
        ns = [int(n) for n in tr]
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for key, label in (
            ("translate_s", "translate()"),
            ("snapshot_s", "Snapshot.build()"),
            ("total_s", "both"),
            ("change_s", "one change, incremental"),
        ):
            if all(key in tr[str(n)] for n in ns):
                axes[0].plot(ns, [tr[str(n)][key] for n in ns], marker="o", label=label)
        base = tr[str(ns[0])]["total_s"] / ns[0]
        axes[0].plot(ns, [base * n for n in ns], ls=":", color="grey", label="linear from smallest")
        axes[0].axhline(2.0, color="red", lw=0.8, ls="--", label="target 2 s")
        axes[0].set_xscale("log")
        axes[0].set_yscale("log")
        axes[0].set_xlabel("integrations")
        axes[0].set_ylabel("seconds")
        axes[0].legend()
        axes[0].grid(True, which="both", alpha=0.3)
        axes[1].plot(
            ns, [tr[str(n)]["snapshot_bytes"] / 2**20 for n in ns], marker="o", label="snapshot MiB"
        )
        svc = scale["service"]
        if svc:
            sn = [int(n) for n in svc]
            axes[1].plot(
                sn,
                [svc[str(n)]["rss_bytes"] / 2**20 for n in sn],
                marker="s",
                label="control-plane RSS MiB",
            )
        axes[1].set_xscale("log")
        axes[1].set_yscale("log")
        axes[1].set_xlabel("integrations")
        axes[1].legend()
        axes[1].grid(True, which="both", alpha=0.3)
        save(fig, "b5_scale.png", "B5 translation scale")
    return plots


# -- markdown -----------------------------------------------------------------------------


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(y) over log(x): 1.0 is linear."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    num = sum((p[0] - mx) * (p[1] - my) for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return num / den if den else math.nan


def _targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    dp = results.get("data_path")
    if dp and "1000" in dp["b1"]["summary"]:
        row = dp["b1"]["summary"]["1000"]
        s50 = row["sidecar_overhead"]["p50"]
        s99 = row["sidecar_overhead"]["p99"]
        p99 = row["python_overhead"]["p99"]
        rows.append(("Sidecar adds ≤ 150 µs p50 over direct at 1,000 req/s", _us(s50), s50 <= 150))
        rows.append(("Sidecar adds ≤ 500 µs p99 over direct at 1,000 req/s", _us(s99), s99 <= 500))
        ratio_ok = (p99 >= 2 * s99) if s99 > 0 else (p99 > 0)
        rows.append(
            (
                "Python proxy's p99 overhead ≥ 2x the sidecar's (1,000 req/s)",
                f"{_us(p99)} vs {_us(s99)} ({_ratio(p99, s99) if s99 > 0 else 'sidecar ≤ 0'})",
                ratio_ok,
            )
        )
    live = results.get("live")
    if live:
        n = live["b4"]["integrations"]
        p99 = live["b4"]["p99_ms"]
        rows.append(
            (
                f"Propagation p99 ≤ 250 ms at 1,000 integrations (measured at {n})",
                _ms(p99),
                p99 <= 250 if n >= 1000 else None,
            )
        )
    push = results.get("push")
    if push:
        key = "1000" if "1000" in push else next(iter(push))
        d = push[key]["delta"]["change_bytes"]
        s = push[key]["sotw"]["change_bytes"]
        rows.append(
            (
                f"One change as delta ≤ 5 % of SotW bytes ({key} integrations)",
                f"{d:,} B vs {s:,} B = {100 * d / s:.2f} %",
                d <= 0.05 * s,
            )
        )
    scale = results.get("scale")
    if scale:
        tr = scale["translate"]
        if "10000" in tr:
            t = tr["10000"]["translate_s"]
            total = tr["10000"]["total_s"]
            rows.append(("10,000 integrations: translate() ≤ 2 s", f"{t:.2f} s", t <= 2.0))
            rows.append(
                (
                    "10,000 integrations: translate + checked snapshot ≤ 2 s (from scratch)",
                    f"{total:.2f} s",
                    total <= 2.0,
                )
            )
            change = tr["10000"].get("change_s")
            if change is not None:
                rows.append(
                    (
                        "10,000 integrations: one change, translate + checked snapshot"
                        " (incremental; no target, for comparison)",
                        _ms(1000 * change),
                        None,
                    )
                )
    if live:
        rps = live["b6"]["get"]["rps"]
        auth = (
            "authenticated: issued API key, checked against the store, cached 1 s"
            if live["b6"].get("auth") == "api_key_store"
            else "token sent, not checked: no authentication yet"
            if live["b6"]["token_sent"]
            else "no token: no authentication yet"
        )
        rows.append(
            (
                f"≥ 2,000 API req/s, GET /integrations/{{id}} ({auth})",
                f"{rps:,.0f} req/s",
                rps >= 2000,
            )
        )
    return rows


def _markdown(results: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    m = results["machine"]
    lines: list[str] = []
    add = lines.append
    quick = " --quick" if results["mode"] == "quick" else ""
    add("# Benchmark results")
    add("")
    add(
        f"Generated by `make bench` (`python -m bench.run{quick}`)"
        f" on {results['started']}; total runtime **{results['total_seconds']:.0f} s**"
        f" ({results['mode']} run). Method and how to re-run: [README.md](README.md)."
    )
    add("")
    add("## Machine and versions")
    add("")
    add(
        f"- CPU: {m['cpu']}, {m['cores']} cores; {m['memory_gib']} GiB RAM; {m['os']},"
        f" kernel {m['kernel']}"
    )
    add(f"- Python {m['python']}; Envoy {m['envoy']}; commit `{m['commit']}`")
    add("- " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    pin = results["pinning"]
    add(
        f"- Pinning: the load generator and the control plane on CPU {pin['generator']}; the proxy"
        f" under test (Envoy `--concurrency 1`, or the Python proxy) and the loopback upstream on"
        f" CPU {pin['proxy']}, so every path crosses between the cores exactly twice."
        f" Scheduling: {results['priority']}."
    )
    noise = results.get("noise", {})
    if noise:
        parts = [f"{k} {v['mean_cores']:.2f} (max {v['max_cores']:.2f})" for k, v in noise.items()]
        add(
            f"- The machine is shared: load average at start {' '.join(m['loadavg_at_start'])};"
            f" CPU cores used by *other* processes during each phase, mean: {'; '.join(parts)}."
            " Tails (p99, p99.9) are the figures most affected by that."
        )
    add("")
    add("## Targets")
    add("")
    add("| target | measured | |")
    add("|---|---|---|")
    for target, measured, ok in _targets(results):
        add(f"| {target} | {measured} | {_mark(ok)} |")
    add("")

    dp = results.get("data_path")
    if dp:
        cfg_rounds = len({r["round"] for r in dp["b1"]["runs"]})
        add("## B1 latency overhead (open loop, fixed rate)")
        add("")
        add(
            f"Latency from the *intended* send time (no coordinated omission), successful requests,"
            f" median over {cfg_rounds} round(s); overhead = proxy - direct, paired per round, then"
            " the median. One tiny GET per request; keep-alive connections (16 opened up front)."
        )
        add("")
        add("| rate | path | p50 | p90 | p99 | p99.9 | errors | generator lag p99 |")
        add("|---|---|---|---|---|---|---|---|")
        for rate, row in dp["b1"]["summary"].items():
            for path in (p for p in ALL_PATHS if p in row):
                r = row[path]
                add(
                    f"| {rate}/s | {LABELS[path]} | {_us(r['p50'])} | {_us(r['p90'])}"
                    f" | {_us(r['p99'])}"
                    f" | {_us(r['p99.9'])} | {_num(r['errors'])} | {_us(r['send_lag_p99'])} |"
                )
        add("")
        add(
            "| rate | overhead over direct | sidecar | Python proxy | Python ÷ sidecar"
            " | bare Envoy |"
        )
        add("|---|---|---|---|---|---|")
        for rate, row in dp["b1"]["summary"].items():
            for key in ("p50", "p99", "p99.9"):
                s = row["sidecar_overhead"][key]
                p = row["python_overhead"][key]
                b = _us(row["bare_overhead"][key]) if "bare_overhead" in row else ""
                ratio = _ratio(p, s) if s > 0 else "n/a"
                add(f"| {rate}/s | {key} | {_us(s)} | {_us(p)} | {ratio} | {b} |")
        add("")
        add("## B2 CPU per 1,000 req/s")
        add("")
        add(
            "utime + stime of the proxy process (all threads) from `/proc/<pid>/stat` over the"
            " whole generator run, divided by the requests sent: CPU cores busy per 1,000 req/s."
        )
        add("")
        add("| rate | sidecar (Envoy) | Python proxy | Python ÷ Envoy | bare Envoy |")
        add("|---|---|---|---|---|")
        for rate, row in dp["b1"]["summary"].items():
            s = row["sidecar"]["cores_per_krps"]
            p = row["python"]["cores_per_krps"]
            b = _num(row["bare"]["cores_per_krps"], 3) if "bare" in row else ""
            add(f"| {rate}/s | {_num(s, 3)} | {_num(p, 3)} | {_ratio(p, s)} | {b} |")
        add("")
        b3 = dp["b3"]["summary"]
        add("## B3 fail-fast (the upstream starts failing under load)")
        add("")
        add(
            "1,000 req/s open loop; 1.2 s in, the upstream starts answering every request 503"
            " (its own dependency is gone). Sidecar: outlier detection `consecutive_5xx: 5`,"
            " ejection 30 s, `max_ejection_percent` 100, panic threshold 0. Python proxy: a breaker"
            " opening after 5 consecutive 5xx for 30 s. Retries off on both. Median over rounds."
        )
        add("")
        add("| | sidecar (Envoy) | Python proxy |")
        add("|---|---|---|")
        rows: list[tuple[str, str, Callable[[float], str]]] = [
            ("requests that reached the failing upstream", "reached_after_failure", _num),
            ("window in which requests still reached it", "failing_window_ms", _ms),
            ("first failure → first fail-fast answer", "time_to_fail_fast_ms", _ms),
            ("rejected (fail-fast) answers", "rejected", _num),
            ("rejected answer p50 (from send)", "rejected_p50_us", _us),
            ("rejected answer p99 (from send)", "rejected_p99_us", _us),
            ("rejected answer p99 (from intended send)", "rejected_p99_from_intended_us", _us),
            ("healthy answer p50 before the failure", "healthy_p50_us", _us),
        ]
        for label, key, fmt in rows:
            add(f"| {label} | {fmt(b3['sidecar'][key])} | {fmt(b3['python'][key])} |")
        add("")

    live = results.get("live")
    push = results.get("push")
    if live or push:
        add("## B4 propagation")
        add("")
    if live:
        b4 = live["b4"]
        authed = (
            " Authentication on: every REST call carries an issued admin API key."
            if live["b6"].get("auth") == "api_key_store"
            else ""
        )
        add(
            f"{b4['integrations']} integrations ({b4['integrations'] - 1} declared in the file, one"
            f" registered through the API), delta ADS, real Envoy. {len(b4['samples_ms'])} changes:"
            " `PUT /integrations/target` switching its upstream between two ports; time from"
            " sending"
            " the PUT to the first request Envoy serves from the new upstream (data path polled"
            f" about every millisecond). The stack took {b4['stack_ready_s']:.0f} s to become"
            " ready." + authed
        )
        add("")
        add("| p50 | p90 | p99 | max | PUT answered, p50 | PUT answered, p99 |")
        add("|---|---|---|---|---|---|")
        add(
            f"| {_ms(b4['p50_ms'])} | {_ms(b4['p90_ms'])} | {_ms(b4['p99_ms'])}"
            f" | {_ms(b4['max_ms'])}"
            f" | {_ms(b4['put_p50_ms'])} | {_ms(b4['put_p99_ms'])} |"
        )
        add("")
    if push:
        add(
            "Delta vs state-of-the-world for one change (one integration moves to another upstream"
            " port: its cluster and route table change), measured on the real ADS server with a"
            " client that subscribes and ACKs like Envoy. Bytes are the serialized responses plus"
            " gRPC framing. *Change* is what the control plane's pipeline spends on the change"
            " before anything is pushed (incremental: only the changed integration is"
            " translated, copied, hashed and walked); *from scratch* is a full translation +"
            " checked snapshot of the same registry, for comparison; *set_snapshot* is the"
            " cache's own consistency check (skipped for a snapshot already checked); *push* is"
            " from then to the last response at the client."
        )
        add("")
        add(
            "| integrations | change | from scratch | set_snapshot | mode | bytes for the change"
            " | push | delta ÷ SotW bytes |"
        )
        add("|---|---|---|---|---|---|---|---|")
        for n, r in push.items():
            for mode in ("delta", "sotw"):
                c = r[mode]
                share = (
                    f"{100 * r['delta']['change_bytes'] / r['sotw']['change_bytes']:.2f} %"
                    if mode == "delta"
                    else ""
                )
                change = r.get("pipeline_change_s")
                add(
                    f"| {n} | {_ms(None if change is None else 1000 * change)}"
                    f" | {1000 * r['translate_and_snapshot_s']:,.0f} ms"
                    f" | {_ms(c['set_snapshot_ms'])}"
                    f" | {mode} | {c['change_bytes']:,} ({c['change_messages']} responses)"
                    f" | {_ms(c['push_ms'])} | {share} |"
                )
        add("")

    scale = results.get("scale")
    if scale:
        tr = scale["translate"]
        add("## B5 translation scale")
        add("")
        add(
            "Pure translator in a fresh process per size (median of repeats). *model* builds the"
            " typed integrations from documents; *snapshot* is `Snapshot.build` (content hashes +"
            " reference check); *held* is the RSS the model and snapshot keep. The control-plane"
            " columns start the real `integration-service run --no-envoy` on an integrations file"
            " of that size (load, validate, store, translate) and read its RSS at the first"
            " snapshot. *Pipeline* runs the control plane's `ConfigPipeline` on the same"
            " registry in the same process: *first* is its first snapshot (each integration"
            " translated alone, then merged), *one change* the median (and max) over 9 edits of"
            " one integration, which it translates, copies, hashes and walks alone."
        )
        add("")
        add(
            "| integrations | model | translate | snapshot | translate + snapshot"
            " | per integration | pipeline: first | pipeline: one change (max)"
            " | snapshot bytes | held RSS | control plane: first snapshot"
            " | control plane RSS |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        svc = scale.get("service", {})
        for n, r in tr.items():
            s = svc.get(n)
            first = f"{s['first_snapshot_s']:.1f} s" if s else "n/a"
            rss = _bytes(s["rss_bytes"]) if s else "n/a"
            add(
                f"| {int(n):,} | {1000 * r['model_s']:,.0f} ms | {1000 * r['translate_s']:,.0f} ms"
                f" | {1000 * r['snapshot_s']:,.0f} ms | {1000 * r['total_s']:,.0f} ms"
                f" | {1e6 * r['total_s'] / int(n):,.0f} µs"
                f" | {_pipeline_cell(r.get('pipeline_cold_s'))}"
                f" | {_pipeline_cell(r.get('change_s'), r.get('change_max_s'))}"
                f" | {_bytes(r['snapshot_bytes'])}"
                f" | {_bytes(r['held_rss_bytes'])}"
                f" | {first} | {rss} |"
            )
        slope = _slope([(int(n), r["total_s"]) for n, r in tr.items()])
        size_slope = _slope([(int(n), r["snapshot_bytes"]) for n, r in tr.items()])
        add("")
        add(
            f"Log-log slope of time over size: **{slope:.2f}** (1.00 is linear); snapshot bytes:"
            f" {size_slope:.2f}."
        )
        add("")

    if live:
        b6 = live["b6"]
        add("## B6 management API")
        add("")
        if b6.get("auth") == "api_key_store":
            auth = (
                "Authentication is on: every request carries an admin API key the service issued"
                " (`POST /api-keys`) and verifies against its store (SQLite), keeping a verified"
                " key for 1 s in a per-process cache, then authorizes by role and tenant. The"
                " per-principal API rate limit is off (`INTEGRATION_SERVICE_API_RATE_LIMIT=0`):"
                " its default of 20 req/s per key would measure the limit, not the API."
            )
        else:
            auth = (
                "Requests carried `Authorization: Bearer …`, which the API did not check: no"
                " authentication yet."
                if b6["token_sent"]
                else "No token was given and the API had no authentication yet."
            )
        add(
            f"Closed loop, 8 keep-alive connections, the control plane alone on one core, with"
            f" {b6['integrations']} integrations registered. {auth}"
        )
        add("")
        add("| request | req/s | p50 | p99 | control-plane CPU (cores) | errors |")
        add("|---|---|---|---|---|---|")
        for name, label in (
            ("get", "GET /integrations/{id}"),
            ("list", "GET /integrations (100 per page)"),
        ):
            r = b6[name]
            add(
                f"| {label} | {r['rps']:,.0f} | {_us(r['p50_us'])} | {_us(r['p99_us'])}"
                f" | {r['cpu_cores']:.2f} | {_num(r['errors'])} |"
            )
        add("")

    add("## Plots")
    add("")
    for name, title in plots:
        add(f"### {title}")
        add("")
        add(f"![{title}](plots/{name})")
        add("")
    add("## Phase timings")
    add("")
    add(", ".join(f"{k} {v:.0f} s" for k, v in results.get("phase_seconds", {}).items()))
    add("")
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    plots = _plots(results, plot_dir)
    text = _markdown(results, plots)
    findings = out / "FINDINGS.md"
    if findings.exists():
        text += "\n" + findings.read_text()
    (out / "RESULTS.md").write_text(text)
    slim = json.loads(json.dumps(results))
    if "data_path" in slim:
        slim["data_path"]["b1"].pop("distributions", None)
        slim["data_path"]["b3"].pop("timelines", None)
    (out / "results.json").write_text(json.dumps(slim, indent=1, sort_keys=True) + "\n")
