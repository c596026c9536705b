"""Redis: ``PING`` and a PUBLISH/SUBSCRIBE round trip with redis-py through the sidecar.

The sidecar is a plain ``tcp_proxy`` (Envoy's ``redis_proxy`` cannot carry Pub/Sub), so
AUTH is end to end with the app's own password (slot ``password``). The round trip uses a
second connection in subscriber mode, exactly what an app's event listener does; a message
that never arrives means the proxy or the server drops Pub/Sub traffic.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from adapters.probes.context import ProbeContext
from adapters.probes.result import ProbeResult

__all__ = ["probe"]


async def _round_trip(ctx: ProbeContext, client: aioredis.Redis) -> ProbeResult:
    channel = f"integration-service:probe:{ctx.integration.id}:{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel)
        deadline = time.monotonic() + ctx.timeout
        subscribed = False
        while not subscribed and time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=deadline - time.monotonic())
            subscribed = bool(message and message.get("type") == "subscribe")
        if not subscribed:
            return ctx.fail("SUBSCRIBE was never confirmed")
        receivers = await client.publish(channel, token)
        while time.monotonic() < deadline:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=deadline - time.monotonic()
            )
            if message and message.get("data") in (token, token.encode()):
                return ctx.ok(f"PING ok; PUBLISH reached {receivers} subscriber(s) and came back")
        return ctx.fail(f"PUBLISH reached {receivers} subscriber(s) but no message came back")
    finally:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


async def probe(ctx: ProbeContext) -> ProbeResult:
    client = aioredis.Redis(
        host=ctx.host,
        port=ctx.port,
        db=int(ctx.settings.get("database", 0)),
        password=ctx.credential("password"),
        socket_timeout=ctx.timeout,
        socket_connect_timeout=ctx.timeout,
        decode_responses=True,
        # One attempt: a health check reports the first failure instead of hiding it.
        retry=Retry(NoBackoff(), retries=0),
    )
    try:
        ctx.at("connect")
        try:
            await client.ping()
        except redis_errors.AuthenticationError as exc:
            return ctx.fail(f"Redis refused AUTH: {exc}", "auth")
        except redis_errors.ResponseError as exc:
            step = "auth" if str(exc).startswith(("NOAUTH", "WRONGPASS")) else "ping"
            return ctx.fail(f"PING answered with an error: {exc}", step)
        except (redis_errors.ConnectionError, OSError) as exc:
            # Envoy accepts and then closes when it cannot reach the upstream.
            return ctx.fail(
                f"no Redis session through sidecar port {ctx.port}: {exc} "
                "(upstream down or unreachable?)"
            )
        ctx.at("pubsub")
        try:
            return await _round_trip(ctx, client)
        except (redis_errors.RedisError, OSError) as exc:
            return ctx.fail(f"Pub/Sub failed: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await client.aclose()
