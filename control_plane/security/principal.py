"""Who is calling: a :class:`Principal` with one role and one tenant.

Roles are ordered ``viewer < operator < admin``; a principal holds every permission of
the roles below its own. The tenant ``*`` marks a global principal that sees every tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "GLOBAL_TENANT",
    "ROLES",
    "Principal",
    "Role",
    "role_rank",
]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
GLOBAL_TENANT = "*"


def role_rank(role: str | None) -> int:
    """0 for no (or an unknown) role, then 1, 2, 3 for viewer, operator, admin."""
    return ROLES.index(role) + 1 if role in ROLES else 0


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``id`` names it in logs and the audit log; it is never a
    secret (``api_key:<key id>``, ``jwt:<sub>``, ``config:admin-key``, ``anonymous``)."""

    id: str
    role: str | None
    tenant: str
    kind: Literal["api_key", "jwt", "anonymous"]

    @property
    def is_global(self) -> bool:
        return self.tenant == GLOBAL_TENANT

    def has_role(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role) > 0

    def sees(self, tenant: str | None) -> bool:
        """Whether objects of ``tenant`` exist for this principal (else they answer 404)."""
        return self.is_global or tenant == self.tenant
