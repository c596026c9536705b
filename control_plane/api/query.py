"""Query-string parameters with clear 400s (answered as problem+json by the error middleware)."""

from __future__ import annotations

from typing import overload

from aiohttp import web

__all__ = ["bool_param", "int_param"]


def bool_param(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise web.HTTPBadRequest(reason=f"query parameter {name!r} must be true or false")


@overload
def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int: ...
@overload
def int_param(request: web.Request, name: str, default: None, lo: int, hi: int) -> int | None: ...
def int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"query parameter {name!r} must be an integer") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(reason=f"query parameter {name!r} must be from {lo} to {hi}")
    return value
