"""The status page: "what is wrong right now, and where", served by the control plane.

A server-rendered shell (public, no data), authenticated HTML fragments built from the
same functions the API answers with, and a live stream of changed rows. See docs/ui.md.
:func:`install_ui` sets up the templates, the page's security headers and the live feed;
the routes are in ``control_plane.api.routes`` like every other table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web

from control_plane.api.ui import live, pages
from control_plane.api.ui.headers import add_security_headers
from control_plane.events.feed import LiveFeed
from control_plane.keys import EVENTS, PIPELINE, SIDECAR, UI_FEED, XDS_CACHE
from control_plane.xds.config_state import node_config

__all__ = ["ROUTES", "install_ui"]

ROUTES = (pages.routes, live.routes)

log = logging.getLogger(__name__)

# Between productions of the overview while a page is open.
TICK_S = 2.0
# Seconds the start-up production waits at most for Envoy to run the first configuration.
PREWARM_TRIES = 120


def install_ui(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("control_plane.api.ui", "templates"),
        autoescape=True,  # every registry string and Envoy message renders as text
        undefined=jinja2.StrictUndefined,
    )
    app.on_response_prepare.append(add_security_headers)
    app[UI_FEED] = LiveFeed(live.make_producer(app), interval_s=TICK_S)
    app.cleanup_ctx.append(_feed_ctx)
    app.on_shutdown.append(_end_streams)


async def _end_streams(app: web.Application) -> None:
    """Before the server waits for open requests: end the live streams."""
    await app[UI_FEED].close()


async def _feed_ctx(app: web.Application) -> AsyncIterator[None]:
    feed = app[UI_FEED]
    events = app.get(EVENTS)
    if events is not None:  # an integration event refreshes the open pages at once
        events.recent.listeners.append(lambda _ident: feed.poke())
    warm = asyncio.create_task(_prewarm(app), name="ui-prewarm")
    yield
    warm.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await warm
    await feed.stop()


async def _prewarm(app: web.Application) -> None:
    """One production once Envoy runs the first configuration, so that the first page
    opened does not pay for compiling the templates and rendering every row (at 1,000
    integrations the first production took about twice as long as later ones); later
    productions re-render only rows whose data changed."""
    for _ in range(PREWARM_TRIES):
        state = node_config(app[XDS_CACHE], app[SIDECAR].node_id, app[PIPELINE].state)
        if state["ok"]:
            try:
                await app[UI_FEED].current(max_age_s=0.0)
            except Exception:
                log.exception("status page: the first production failed")
            return
        await asyncio.sleep(1.0)
