"""Request bodies: one JSON reader for every handler, hostile input refused as problems.

* Size: aiohttp's ``client_max_size`` (1 MiB by default) answers 413 (problem+json, title
  "Content Too Large") before the body is read into memory.
* Depth: nesting past :data:`MAX_DEPTH` is refused with 400 before parsing: Python's JSON
  decoder recurses per level, and ~1,000 levels used to end in a ``RecursionError`` (500).
  The scan is linear and ignores brackets inside strings.
* Duplicate keys: refused with 422 naming the key; JSON leaves them undefined and Python
  silently keeps the last one (so ``{"id": "a", "id": "b"}`` registered ``b``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from control_plane.problems import Problem, RegistryError

__all__ = ["JSON_TYPES", "MAX_DEPTH", "json_body"]

MAX_DEPTH = 32
JSON_TYPES = ("application/json", "application/merge-patch+json", "")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def nesting_depth(text: str, limit: int) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text``, counted up to ``limit + 1``."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


async def json_body(request: web.Request) -> Any:
    """The request's JSON body, or an HTTP error / :class:`RegistryError` (422) that the
    errors middleware answers as problem+json."""
    if request.content_type not in JSON_TYPES:
        raise web.HTTPUnsupportedMediaType(reason="send the body as application/json")
    raw = await request.read()  # 413 past client_max_size
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(reason="the body is not valid JSON: not UTF-8") from None
    if nesting_depth(text, MAX_DEPTH) > MAX_DEPTH:
        raise web.HTTPBadRequest(
            reason=f"the JSON body is nested deeper than {MAX_DEPTH} levels; "
            "no document of this API needs that"
        )
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise RegistryError(
            [Problem("", f"duplicate key {exc.key!r} in the JSON body", "send each key once")],
            "invalid JSON body",
        ) from None
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(reason=f"the body is not valid JSON: {exc}") from None
