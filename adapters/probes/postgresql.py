"""PostgreSQL: asyncpg connects to the sidecar port and runs ``SELECT 1``.

Envoy only proxies bytes (``tcp_proxy``): the startup message, TLS negotiation (asyncpg's
default ``ssl="prefer"`` sends SSLRequest and falls back to plain text) and authentication
are end to end between the driver and the server, so the password -- when the server wants
one -- is the app's own credential (slot ``password``), resolved here and never reported.
"""

from __future__ import annotations

import asyncpg

from adapters.probes.context import ProbeContext
from adapters.probes.result import ProbeResult

__all__ = ["probe"]

# Rejections of the startup packet: the server answered, but not to these credentials.
_AUTH_ERRORS = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


async def probe(ctx: ProbeContext) -> ProbeResult:
    user = str(ctx.settings.get("user", "postgres"))
    database = str(ctx.settings.get("database", user))
    ctx.at("connect")
    try:
        connection = await asyncpg.connect(
            host=ctx.host,
            port=ctx.port,
            user=user,
            database=database,
            password=ctx.credential("password"),
            timeout=ctx.timeout,
        )
    except _AUTH_ERRORS as exc:
        return ctx.fail(f"PostgreSQL refused {user}@{database}: {exc}", "auth")
    except asyncpg.PostgresError as exc:
        return ctx.fail(f"PostgreSQL refused the connection: {exc}", "auth")
    except (OSError, asyncpg.InterfaceError) as exc:
        # Envoy accepts on the sidecar port and closes it when the upstream cannot be
        # reached (or its TLS handshake fails): the driver sees a closed connection.
        return ctx.fail(
            f"no PostgreSQL session through sidecar port {ctx.port}: {type(exc).__name__}: "
            f"{exc or 'connection closed'} (upstream down or unreachable?)"
        )
    try:
        ctx.at("query")
        value = await connection.fetchval("SELECT 1", timeout=ctx.timeout)
        version = connection.get_server_version()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        return ctx.fail(f"SELECT 1 failed: {type(exc).__name__}: {exc}")
    finally:
        await connection.close(timeout=ctx.timeout)
    if value != 1:
        return ctx.fail(f"SELECT 1 returned {value!r}")
    return ctx.ok(f"SELECT 1 as {user}@{database} (PostgreSQL {version.major}.{version.minor})")
