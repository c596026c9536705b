"""What the broker reports of one integration's token: never the token itself."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["TokenState", "TokenStatus"]

# pending: no attempt yet; valid: a token is injected and the last attempt succeeded;
# refreshing: a request is in flight; failing: the last attempt failed, the current token is
# still injected; expired: no valid token is injected (requests go out without one).
TokenState = Literal["pending", "valid", "refreshing", "failing", "expired"]


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


@dataclass(slots=True)
class TokenStatus:
    state: TokenState = "pending"
    injecting: bool = False
    expires_at: float | None = None
    issued_at: float | None = None
    last_refresh: float | None = None  # when this replica last obtained a token
    source: str | None = None  # idp: fetched here; shared: adopted from another replica
    next_refresh: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0
    token_url: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "injecting": self.injecting,
            "token_url": self.token_url,
            "expires_at": _iso(self.expires_at),
            "issued_at": _iso(self.issued_at),
            "last_refresh": _iso(self.last_refresh),
            "source": self.source,
            "next_refresh": _iso(self.next_refresh),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "consecutive_failures": self.consecutive_failures,
        }
