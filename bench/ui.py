"""The status page at 1,000 integrations: U1 first paint, U2 stream CPU.  ``python -m bench.ui``

One real stack (``bench.stack``: the control plane as a subprocess with authentication on,
configuring a real Envoy, each pinned to its own core) with 1,000 benchmark integrations
(``bench/registry_docs.py``). The browser is headless Chromium (Debian's ``chromium``, through
Playwright, ``tests/support/browser.py``) on the same machine.

**U1 first paint.** A fresh browser context per run, the API key already in sessionStorage
(as after signing in), ``/ui`` loaded: the page's ``first-paint`` and
``first-contentful-paint`` entries (``performance.getEntriesByType('paint')``), then the
page's own marks: ``overview-rows`` (the 1,000 rows are in the DOM) and
``overview-painted`` (the frame after that, i.e. the rows on screen), all in ms since
navigation start. Run 1 is cold (the overview's first production: Envoy's ``/clusters``
and ``/stats`` read, 1,000 rows rendered); the others reuse the production of the last 2 s,
as any page opened while another is live does.

**U2 live-stream CPU.** The control plane's CPU (utime + stime from ``/proc/<pid>/stat``)
over a fixed window with no page open, then with 10 pages open on the overview (each
holding a live stream), in steady state (no integration changing). The stream's cost is
the difference, in % of one core. Envoy's CPU over the same windows is reported beside it
(its main thread answers the overview's ``/clusters`` and ``/stats`` reads).

Nothing asserts a number. ``--quick`` shortens the windows and runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page

from bench.procs import CORES, cpu_seconds
from bench.registry_docs import document, free_ports, integrations_yaml
from bench.stack import Stack, sidecar_stack
from tests.support.browser import PageErrors, chromium, watch_errors
from tests.support.ports import free_port

__all__ = ["main"]

TOKEN_KEY = "integration-service.token"  # noqa: S105 - the sessionStorage key of app.js
PAGES = 10

_TIMINGS = """() => {
  const paint = Object.fromEntries(
    performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
  const mark = name => (performance.getEntriesByName(name)[0] || {}).startTime ?? null;
  return {
    first_paint_ms: paint['first-paint'] ?? null,
    first_contentful_paint_ms: paint['first-contentful-paint'] ?? null,
    rows_in_dom_ms: mark('overview-rows'),
    rows_painted_ms: mark('overview-painted'),
    rows: document.querySelectorAll('#rows tr').length,
  };
}"""


async def _context(browser: Browser, key: str) -> BrowserContext:
    context = await browser.new_context(viewport={"width": 1500, "height": 900})
    await context.add_init_script(
        f"sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(key)})"
    )
    return context


async def _open(context: BrowserContext, url: str, count: int) -> tuple[Page, PageErrors]:
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(url)
    await page.wait_for_function(
        "n => document.querySelectorAll('#rows tr').length >= n"
        " && performance.getEntriesByName('overview-painted').length > 0",
        arg=count,
        timeout=30_000,
    )
    await page.wait_for_selector('#live[data-state="live"]', timeout=30_000)
    return page, errors


async def _first_paint(stack: Stack, browser: Browser, count: int, runs: int) -> dict[str, Any]:
    out = []
    for _ in range(runs):
        context = await _context(browser, stack.api_key)
        page, errors = await _open(context, stack.api("/ui"), count)
        timing = dict(await page.evaluate(_TIMINGS))
        timing["errors"] = errors.all()
        out.append(timing)
        await context.close()
        await asyncio.sleep(2.5)  # past the shared production's freshness: each run re-collects
    warm = out[1:] or out
    return {
        "runs": out,
        "cold": out[0],
        "warm_median": {
            key: statistics.median(float(r[key]) for r in warm)
            for key in ("first_contentful_paint_ms", "rows_in_dom_ms", "rows_painted_ms")
        },
        "worst_rows_painted_ms": max(float(r["rows_painted_ms"]) for r in out),
    }


async def _cpu_window(pids: tuple[int, int], seconds: float) -> tuple[float, float]:
    """% of one core each process used over ``seconds``."""
    first = [cpu_seconds(pid) for pid in pids]
    start = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    service, envoy = (
        100.0 * (cpu_seconds(p) - f) / elapsed for p, f in zip(pids, first, strict=True)
    )
    return service, envoy


async def _stream_cpu(
    stack: Stack, browser: Browser, count: int, window_s: float
) -> dict[str, Any]:
    pids = (stack.service_pid, stack.envoy_pid)
    await asyncio.sleep(3.0)  # no page open: the feed stops producing
    idle, envoy_idle = await _cpu_window(pids, window_s)
    contexts = [await _context(browser, stack.api_key) for _ in range(PAGES)]
    pages = [(await _open(c, stack.api("/ui"), count))[0] for c in contexts]
    await asyncio.sleep(3.0)  # every stream past its first (full) send
    open_pct, envoy_open = await _cpu_window(pids, window_s)
    live = [await p.get_attribute("#live", "data-state") for p in pages]
    for context in contexts:
        await context.close()
    return {
        "window_s": window_s,
        "pages": PAGES,
        "idle_pct": round(idle, 2),
        "open_pct": round(open_pct, 2),
        "stream_pct": round(open_pct - idle, 2),
        # Envoy's side: its admin API answers the overview's reads on its main thread.
        "envoy_idle_pct": round(envoy_idle, 2),
        "envoy_open_pct": round(envoy_open, 2),
        "pages_live": live.count("live"),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    count = args.integrations
    upstream_port = free_port()  # nothing listens: no traffic flows in this benchmark
    ports = free_ports(count)
    docs = [document(f"int-{n:04d}", upstream_port, ports[n]) for n in range(count)]
    envoy_cpu, service_cpu = CORES
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        async with (
            sidecar_stack(
                Path(tmp), integrations_yaml(docs), envoy_cpu=envoy_cpu, service_cpu=service_cpu
            ) as stack,
            chromium() as browser,
        ):
            paint = await _first_paint(stack, browser, count, 3 if args.quick else 6)
            cpu = await _stream_cpu(stack, browser, count, 10.0 if args.quick else 30.0)
    return {"integrations": count, "paint": paint, "cpu": cpu, "cores": CORES}


def markdown(result: dict[str, Any]) -> str:
    paint, cpu = result["paint"], result["cpu"]
    rows = [
        (
            str(n + 1) + (" (cold)" if n == 0 else ""),
            *(
                f"{float(run[k]):.0f}"
                for k in (
                    "first_paint_ms",
                    "first_contentful_paint_ms",
                    "rows_in_dom_ms",
                    "rows_painted_ms",
                )
            ),
            str(run["rows"]),
        )
        for n, run in enumerate(paint["runs"])
    ]
    table = [
        "| run | first paint ms | first contentful paint ms | rows in DOM ms | rows painted ms "
        "| rows |",
        "|---|---:|---:|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    warm = paint["warm_median"]
    return "\n".join(
        [
            "",
            "## Status page (U1 first paint, U2 live-stream CPU)",
            "",
            f"`python -m bench.ui` (method in its docstring): {result['integrations']:,} "
            "integrations, real Envoy, authentication on, headless Chromium on the same "
            "machine. Targets: first paint of the overview ≤ 1 s; the live stream ≤ 5 % of a "
            f"core with {cpu['pages']} open pages.",
            "",
            *table,
            "",
            f"U1: warm median: first contentful paint {warm['first_contentful_paint_ms']:.0f} "
            f"ms, rows painted **{warm['rows_painted_ms']:.0f} ms**; worst run (rows painted) "
            f"{paint['worst_rows_painted_ms']:.0f} ms.",
            "",
            f"U2: control-plane CPU over {cpu['window_s']:g} s: {cpu['idle_pct']:.2f} % of a "
            f"core with no page open, {cpu['open_pct']:.2f} % with {cpu['pages']} pages open "
            f"({cpu['pages_live']} live): the stream costs **{cpu['stream_pct']:.2f} %** of a "
            f"core. Envoy (whose main thread answers the admin reads): {cpu['envoy_idle_pct']:.2f} "
            f"% with no page, {cpu['envoy_open_pct']:.2f} % with {cpu['pages']} pages.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter windows")
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = asyncio.run(_main(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
