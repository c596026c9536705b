"""``GET /ui/stream``: the overview's rows as they change, as server-sent events.

One :class:`~control_plane.events.feed.LiveFeed` production per tick (2 s, sooner after an
``integration.*`` event) collects every row once and renders only the rows whose data
changed; each open stream then sends its caller the rows it may see that differ from what
it sent before, so ten open pages cost one collection per tick plus ten dictionary
comparisons.

Authentication: ``EventSource`` cannot send headers, so the page reads this stream with
``fetch()`` and the same ``Authorization`` header as every other call; the credential is
never put in a URL (which would reach access logs and browser history). See
docs/security.md, "Status page".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from control_plane.api.caller import sees
from control_plane.api.openapi.spec import operation, query
from control_plane.api.ui.pages import Overview, overview_of, render_row
from control_plane.api.ui.rows import Row, collect_rows
from control_plane.keys import UI_FEED

__all__ = ["PING_S", "make_producer", "routes"]

routes = web.RouteTableDef()

# A comment line this often: proxies keep the stream open and the page notices a dead one.
PING_S = 5.0


def make_producer(app: web.Application) -> Callable[[], Coroutine[Any, Any, Overview]]:
    """The feed's producer: every row, re-rendering only the rows that changed."""
    rendered: dict[str, tuple[Row, str]] = {}

    async def produce() -> Overview:
        rows = await collect_rows(app)
        html: dict[str, str] = {}
        for ident, row in rows.items():
            cached = rendered.get(ident)
            if cached is None or cached[0] != row:
                cached = rendered[ident] = (row, render_row(app, row))
            html[ident] = cached[1]
        for gone in set(rendered) - set(rows):
            del rendered[gone]
        return Overview(rows, html)

    return produce


def _changes(
    request: web.Request, data: Overview, sent: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows to send (visible and changed since last sent) and ids to remove."""
    upsert = []
    shown = set()
    for ident, row in data.rows.items():
        if not sees(request, row.tenant):
            continue
        shown.add(ident)
        html = data.html[ident]
        if sent.get(ident) is not html:
            upsert.append({"id": ident, "rank": row.rank, "html": html})
            sent[ident] = html
    removed = [ident for ident in sent if ident not in shown]
    for ident in removed:
        del sent[ident]
    return upsert, removed


@routes.get("/ui/stream")
@operation(
    "getStatusStream",
    "ui",
    "Status page: live rows (server-sent events)",
    "`text/event-stream`. Event `rows`: `{upsert: [{id, rank, html}], remove: [id], "
    "version}` with the rows the caller may see that changed; a comment line every 5 s. "
    "`since`: the `data-version` of the overview the page shows (else every row is sent "
    "first). Read with `fetch()` and the Authorization header (EventSource cannot send it).",
    {
        "200": {
            "description": "The stream",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
    parameters=[query("since", "The overview version the page shows", {"type": "integer"})],
)
async def stream(request: web.Request) -> web.StreamResponse:
    feed = request.app[UI_FEED]
    data, version = await overview_of(request.app)
    sent: dict[str, str] = {}
    if request.query.get("since") == str(version):  # the page shows this production
        sent = {r.id: data.html[r.id] for r in data.rows.values() if sees(request, r.tenant)}
    feed.join()
    try:
        from aiohttp_sse import sse_response  # with the first stream opened (issue 20)

        async with sse_response(request, ping_interval=PING_S, send_timeout=10.0) as sse:
            seen = -1
            while sse.is_connected() and not feed.closed:
                latest = feed.latest
                if isinstance(latest, Overview) and feed.version != seen:
                    seen = feed.version
                    upsert, removed = _changes(request, latest, sent)
                    if upsert or removed:
                        payload = {"upsert": upsert, "remove": removed, "version": seen}
                        await sse.send(json.dumps(payload, separators=(",", ":")), event="rows")
                await feed.wait_newer(seen, PING_S)
    except (ConnectionResetError, TimeoutError):
        pass  # the page went away (or stalled past the send timeout)
    finally:
        await feed.leave()
    return sse
