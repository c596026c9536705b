"""``integration-service test``: run probes through the management API and print a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

__all__ = ["run_probe_table"]


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


async def run_probe_table(base_url: str, ids: Sequence[str], environ: Mapping[str, str]) -> int:
    """Exit 0 when every probe passed, 1 otherwise; 2 when the API cannot be reached."""
    headers = {}
    if token := environ.get("INTEGRATION_SERVICE_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    timeout = aiohttp.ClientTimeout(total=60)
    rows: list[list[str]] = []
    failed = False
    try:
        async with aiohttp.ClientSession(base_url, headers=headers, timeout=timeout) as session:
            if not ids:
                async with session.get(
                    "/integrations", params={"enabled": "true", "limit": "500"}
                ) as r:
                    listing: Any = await r.json()
                ids = [item["id"] for item in listing.get("items", [])]
            async with session.get("/integrations", params={"limit": "500"}) as r:
                known = {i["id"]: i for i in (await r.json()).get("items", [])}
            for ident in ids:
                item = known.get(ident)
                if item is None:
                    rows.append([ident, "?", "?", "no", "-", "unknown integration"])
                    failed = True
                    continue
                async with session.post(f"/integrations/{ident}/test") as r:
                    body: Any = await r.json(content_type=None)
                port = str(item.get("listen_port", "?"))
                if r.status == 200:
                    ok = bool(body.get("ok"))
                    failed |= not ok
                    step = "" if ok else f"{body.get('step')}: {body.get('detail')}"
                    latency = f"{body.get('latency_ms', 0):.1f} ms"
                    rows.append([ident, item["kind"], port, "yes" if ok else "NO", latency, step])
                else:
                    failed = True
                    rows.append(
                        [ident, item["kind"], port, "n/a", "-", f"{r.status}: {body.get('detail')}"]
                    )
    except aiohttp.ClientError as exc:
        print(f"cannot reach the management API at {base_url}: {exc}")
        return 2
    header = ["ID", "KIND", "PORT", "OK", "LATENCY", "FAILING STEP"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(_row(header, widths))
    for row in rows:
        print(_row(row, widths))
    return 1 if failed else 0
