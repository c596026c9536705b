"""``integration-service test``: run probes through the management API and print a table.

Exit codes: 0 every probe passed, 1 a probe failed (or an id is unknown), 2 the API could
not be used: unreachable, or it refused a call (401/403, 5xx, ...). A refused call is never
read as "no integrations": it prints the problem's ``detail`` and, for 401, how to pass
credentials (``INTEGRATION_SERVICE_TOKEN``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

__all__ = ["TOKEN_ENV", "ApiRefused", "run_probe_table"]

TOKEN_ENV = "INTEGRATION_SERVICE_TOKEN"  # noqa: S105 - the variable's name, not a token
EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
# Answers to POST /integrations/{id}/test that are about the integration, not the caller:
# they become a row of the table (unknown id, disabled integration).
_ROW_STATUSES = (404, 409)


class ApiRefused(Exception):
    """The management API answered a call with an error status."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        detail = body.get("detail") if isinstance(body, Mapping) else None
        title = body.get("title") if isinstance(body, Mapping) else None
        self.status = status
        text = f"the management API refused {method} {path}: {status}"
        if title:
            text += f" {title}"
        if detail:
            text += f": {detail}"
        if status == 401:
            text += (
                f"\nset {TOKEN_ENV} to an API key or JWT (the viewer role lists integrations, "
                "operator runs probes), e.g. export INTEGRATION_SERVICE_TOKEN=isk_..."
            )
        elif status == 403:
            text += f"\nthe credentials in {TOKEN_ENV} lack the role this needs (operator)"
        super().__init__(text)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


async def _body(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError:  # not JSON (a proxy's error page, ...)
        return {"detail": (await response.text())[:200]}


async def _listing(session: aiohttp.ClientSession, **params: str) -> dict[str, Any]:
    async with session.get("/integrations", params={"limit": "500", **params}) as r:
        body = await _body(r)
        if r.status != 200 or not isinstance(body, dict):
            raise ApiRefused("GET", "/integrations", r.status, body)
        return body


async def _rows(session: aiohttp.ClientSession, ids: Sequence[str]) -> tuple[list[list[str]], bool]:
    if not ids:
        ids = [item["id"] for item in (await _listing(session, enabled="true"))["items"]]
    known = {i["id"]: i for i in (await _listing(session))["items"]}
    rows: list[list[str]] = []
    failed = False
    for ident in ids:
        item = known.get(ident)
        if item is None:
            rows.append([ident, "?", "?", "no", "-", "unknown integration"])
            failed = True
            continue
        path = f"/integrations/{ident}/test"
        async with session.post(path) as r:
            body: Any = await _body(r)
        port = str(item.get("listen_port", "?"))
        if r.status == 200:
            ok = bool(body.get("ok"))
            failed |= not ok
            step = "" if ok else f"{body.get('step')}: {body.get('detail')}"
            latency = f"{body.get('latency_ms', 0):.1f} ms"
            rows.append([ident, item["kind"], port, "yes" if ok else "NO", latency, step])
        elif r.status in _ROW_STATUSES:
            failed = True
            rows.append(
                [ident, item["kind"], port, "n/a", "-", f"{r.status}: {body.get('detail')}"]
            )
        else:
            raise ApiRefused("POST", path, r.status, body)
    return rows, failed


async def run_probe_table(base_url: str, ids: Sequence[str], environ: Mapping[str, str]) -> int:
    """Print the table; return the exit code (see the module docstring)."""
    headers = {}
    if token := environ.get(TOKEN_ENV):
        headers["Authorization"] = f"Bearer {token}"
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(base_url, headers=headers, timeout=timeout) as session:
            rows, failed = await _rows(session, ids)
    except aiohttp.ClientError as exc:
        print(f"cannot reach the management API at {base_url}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except ApiRefused as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_UNUSABLE
    header = ["ID", "KIND", "PORT", "OK", "LATENCY", "FAILING STEP"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(_row(header, widths))
    for row in rows:
        print(_row(row, widths))
    return EXIT_FAILED if failed else EXIT_OK
