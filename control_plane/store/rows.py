"""What the concern modules read back: rows indexed by column name, JSON as text.

Both engines' rows are indexed by column name and every shared query selects its JSON
columns as text, so one decoder per record serves both; the one other difference, how a
timestamp comes back, is :meth:`~control_plane.store.sessions.Session.timestamp`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

__all__ = ["Row", "json_value"]


class Row(Protocol):
    """``asyncpg.Record`` and ``sqlite3.Row`` alike: indexed by column name."""

    def __getitem__(self, column: str, /) -> Any: ...


def json_value(text: str | None) -> Any:
    """A JSON column read back (selected as text on both engines); None stays None."""
    return None if text is None else json.loads(text)
