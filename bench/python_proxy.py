"""Reference all-Python reverse proxy: the same policies as the sidecar, done in Python.

What the benchmark compares Envoy against: one aiohttp server forwarding to one upstream
with an aiohttp client session (keep-alive pool), and the policies the benchmark gives the
sidecar integration:

* rate limit: an ``aiolimiter`` leaky bucket; over the limit the request is answered 429
  at once, as Envoy's ``local_ratelimit`` does (it does not queue);
* circuit breaker, connection/request limits: at most ``--max-requests`` in flight (503
  beyond, like Envoy's ``max_requests``) and a pool of ``--max-connections``;
* outlier detection: after ``--consecutive-5xx`` consecutive 5xx answers or connection
  errors the breaker opens for ``--ejection-time`` seconds and requests fail fast with 503;
  then one trial request is let through (half-open);
* route timeout ``--timeout``; no retries (the benchmark integration has ``max_retries: 0``).

The upstream's ``Host`` is sent, as the sidecar's route rewrites it. No access log (Envoy
writes one per request: that favours this proxy). One process, one event loop.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiolimiter import AsyncLimiter

__all__ = ["Breaker", "create_app", "main"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass(slots=True)
class Breaker:
    """Consecutive-failure circuit breaker: closed -> open (fail fast) -> half-open -> ..."""

    threshold: int
    open_for_s: float
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    def allow(self, now: float) -> bool:
        if self.opened_at is None:
            return True
        if now - self.opened_at < self.open_for_s or self.trial_in_flight:
            return False
        self.trial_in_flight = True  # half-open: one request decides
        return True

    def record(self, ok: bool, now: float) -> None:
        self.trial_in_flight = False
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = now


@dataclass(slots=True)
class InFlight:
    count: int
    limit: int


_UPSTREAM = web.AppKey("upstream", str)
_SESSION = web.AppKey("session", aiohttp.ClientSession)
_LIMITER = web.AppKey("limiter", AsyncLimiter)
_BREAKER = web.AppKey("breaker", Breaker)
_LIMITS = web.AppKey("limits", InFlight)


async def _proxy(request: web.Request) -> web.StreamResponse:
    app = request.app
    breaker = app[_BREAKER]
    limits = app[_LIMITS]
    now = time.monotonic()
    if not breaker.allow(now):
        return web.Response(status=503, text="circuit open\n")
    if limits.count >= limits.limit:
        return web.Response(status=503, text="overflow\n")
    limiter = app[_LIMITER]
    if not limiter.has_capacity():
        return web.Response(status=429, text="rate limited\n")
    await limiter.acquire()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    body = await request.read() if request.body_exists else None
    limits.count += 1
    try:
        async with app[_SESSION].request(
            request.method,
            app[_UPSTREAM] + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
            out_headers = {
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
            }
    except (aiohttp.ClientError, TimeoutError):
        breaker.record(False, time.monotonic())
        return web.Response(status=503, text="upstream connect error\n")
    finally:
        limits.count -= 1
    breaker.record(status < 500, time.monotonic())
    return web.Response(status=status, body=payload, headers=out_headers)


def create_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    app[_UPSTREAM] = args.upstream.rstrip("/")
    app[_BREAKER] = Breaker(args.consecutive_5xx, args.ejection_time)
    app[_LIMITS] = InFlight(0, args.max_requests)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        # The limiter binds to the running loop: create it inside it.
        app[_LIMITER] = AsyncLimiter(args.rate_limit, 1.0)
        connector = aiohttp.TCPConnector(limit=args.max_connections, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=args.timeout, connect=args.connect_timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            app[_SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.python_proxy", description=__doc__)
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8080")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate-limit", type=float, default=100_000.0, help="requests per second")
    p.add_argument("--max-requests", type=int, default=1024)
    p.add_argument("--max-connections", type=int, default=1024)
    p.add_argument("--consecutive-5xx", type=int, default=5)
    p.add_argument("--ejection-time", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--cpu", type=int)
    args = p.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    web.run_app(create_app(args), host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
