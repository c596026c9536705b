"""The token broker: OAuth2 client-credentials tokens minted by the control plane,
refreshed ahead of expiry, shared across replicas through Redis (encrypted), and handed
to Envoy only as each integration's own SDS secret (``token/<id>``)."""

from control_plane.tokens.broker import REFRESH_FAILED, REFRESHED, Clock, TokenBroker, WallClock
from control_plane.tokens.client import GuardedResolver, TokenError, fetch_token
from control_plane.tokens.schedule import Minted, RefreshPolicy
from control_plane.tokens.shared import SharedTokens
from control_plane.tokens.status import TokenStatus

__all__ = [
    "REFRESHED",
    "REFRESH_FAILED",
    "Clock",
    "GuardedResolver",
    "Minted",
    "RefreshPolicy",
    "SharedTokens",
    "TokenBroker",
    "TokenError",
    "TokenStatus",
    "WallClock",
    "fetch_token",
]
