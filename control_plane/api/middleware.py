"""Request correlation and error mapping.

* ``X-Request-ID`` is taken from the request (when sane) or generated, echoed in the
  response and set in a context variable that every log line and event carries.
* A W3C ``traceparent`` is accepted; its trace id goes into the logs, and a child
  ``traceparent`` (same trace, new span) is returned.
* Domain exceptions become problem+json responses; nothing else leaks a traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from control_plane.api.problems import problem_response
from control_plane.observability.logging import REQUEST_ID, TRACE_ID
from control_plane.problems import RegistryError
from control_plane.registry.service import DeclaredConflict
from control_plane.store.protocol import ConflictError, NotFoundError, StoreUnavailableError

__all__ = ["PreconditionFailed", "correlation_middleware", "errors_middleware"]

log = logging.getLogger("control_plane.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class PreconditionFailed(Exception):
    """``If-Match`` named a version that is no longer current."""


@web.middleware
async def correlation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else str(uuid.uuid4())
    trace = _TRACEPARENT.match(request.headers.get("traceparent", "").strip().lower())
    trace_id = trace.group(1) if trace and trace.group(1) != "0" * 32 else None
    rid_token = REQUEST_ID.set(request_id)
    tid_token = TRACE_ID.set(trace_id)
    started = time.monotonic()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    finally:
        elapsed = time.monotonic() - started
    try:
        response.headers["X-Request-ID"] = request_id
        if trace:
            response.headers["traceparent"] = (
                f"00-{trace.group(1)}-{secrets.token_hex(8)}-{trace.group(3)}"
            )
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return response
    finally:
        REQUEST_ID.reset(rid_token)
        TRACE_ID.reset(tid_token)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        return problem_response(
            422,
            f"{exc.summary}: {len(exc.problems)} problem(s)",
            type_="https://integration-service.dev/problems/validation",
            errors=[p.as_dict() for p in exc.problems],
        )
    except DeclaredConflict as exc:
        return problem_response(
            409, str(exc), type_="https://integration-service.dev/problems/declared"
        )
    except ConflictError as exc:
        return problem_response(409, str(exc))
    except NotFoundError as exc:
        return problem_response(404, str(exc))
    except PreconditionFailed as exc:
        return problem_response(412, str(exc))
    except StoreUnavailableError as exc:
        return problem_response(
            503,
            f"the registry store is unavailable: {exc}; nothing was changed",
            headers={"Retry-After": "5"},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(
            exc.status,
            exc.reason or exc.text or "error",
            headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
        )
    except Exception:
        log.exception("unhandled error")
        return problem_response(500, "internal error; see the service log for this request id")
