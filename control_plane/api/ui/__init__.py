"""The status page: "what is wrong right now, and where", served by the control plane.

A server-rendered shell (public, no data), authenticated HTML fragments built from the
same functions the API answers with, and a live stream of changed rows. See docs/ui.md.
:func:`install_ui` sets up the templates, the page's security headers and the live feed;
the routes are in ``control_plane.api.routes`` like every other table.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.api.ui import live, pages
from control_plane.api.ui.headers import add_security_headers
from control_plane.api.ui.renderer import TEMPLATES, Templates
from control_plane.events.feed import LiveFeed
from control_plane.keys import EVENTS, UI_FEED

__all__ = ["ROUTES", "install_ui"]

ROUTES = (pages.routes, live.routes)

log = logging.getLogger(__name__)

# Between productions of the overview while a page is open.
TICK_S = 2.0


def install_ui(app: web.Application) -> None:
    app[TEMPLATES] = Templates("control_plane.api.ui")  # Jinja2 loads with the first page
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
    yield
    await feed.stop()
