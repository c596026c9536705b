"""When to refresh a token, when to stop injecting it, and how long to back off. Pure.

Times are wall-clock seconds (``time.time()``): tokens shared through Redis carry their
issue and expiry times to other replicas, whose monotonic clocks mean nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Minted", "RefreshPolicy"]


@dataclass(frozen=True, slots=True)
class Minted:
    """One access token: its value (never logged), when it was issued and when it expires.
    ``source``: ``idp`` when this replica fetched it, ``shared`` when adopted from Redis."""

    token: str
    issued_at: float
    expires_at: float
    source: str = "idp"

    @property
    def lifetime(self) -> float:
        return max(0.0, self.expires_at - self.issued_at)

    def __repr__(self) -> str:  # never the token, whatever prints the object
        return f"Minted(issued_at={self.issued_at}, expires_at={self.expires_at})"


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """``fraction``/``jitter``: refresh at ``lifetime * (fraction - jitter * r)`` after issue
    (``r`` uniform in [0, 1), drawn per replica and token, so replicas sharing a token do
    not wake together). ``margin``/``margin_fraction``: a token is withdrawn (no longer
    injected) ``min(margin, lifetime * margin_fraction)`` before it expires, so a request
    injected at the last moment still arrives before expiry. Failures back off
    exponentially from ``backoff_base`` up to ``backoff_max``, with "equal jitter"."""

    fraction: float = 0.9
    jitter: float = 0.04
    margin: float = 30.0
    margin_fraction: float = 0.05
    backoff_base: float = 1.0
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.fraction - self.jitter:
            raise ValueError("token_refresh_fraction must exceed token_refresh_jitter")
        if self.fraction >= 1 - self.margin_fraction:
            raise ValueError(
                "token_refresh_fraction must leave room before the withdrawal margin "
                f"(below {1 - self.margin_fraction:g})"
            )

    def refresh_at(self, minted: Minted, r: float) -> float:
        return minted.issued_at + minted.lifetime * (self.fraction - self.jitter * r)

    def withdraw_at(self, minted: Minted) -> float:
        return minted.expires_at - min(self.margin, minted.lifetime * self.margin_fraction)

    def backoff(self, failures: int, r: float) -> float:
        """Delay before retry number ``failures`` (1: the first retry)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, failures - 1))
        return ceiling * (0.5 + 0.5 * r)
