"""The status page's response headers: a strict Content-Security-Policy and friends.

No inline script or style, nothing from another origin, no framing: with autoescaped
templates this keeps a hostile registry string (``<img src=x onerror=...>``) inert twice
over. Applied to every ``/ui`` response, the event stream included, just before its
headers are sent (``on_response_prepare``).
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["CSP", "SECURITY_HEADERS", "add_security_headers"]

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/ui" or request.path.startswith("/ui/"):
        response.headers.update(SECURITY_HEADERS)
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"  # fragments carry tenant data
