"""The store's failures, shared by every concern and both engines.

They live apart from the records and Protocols so that the engine-neutral modules and
the engines can raise them without importing the whole contract; callers keep importing
them from :mod:`control_plane.store.protocol`.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "NotFoundError",
    "StoreError",
    "StoreUnavailableError",
]


class StoreError(Exception):
    """Base class of store failures."""


class ConflictError(StoreError):
    """Duplicate id, duplicate listen port, or a stale ``expected_version``."""


class NotFoundError(StoreError):
    """No integration with that id."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached; nothing was written. Callers answer 503."""
