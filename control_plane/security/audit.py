"""The audit log: who did what to which object, with before/after, in the store.

Recorded by the security middleware after every *successful* mutating call (see the
``action`` column of the permission matrix): principal id (never a credential), the
tenant the object belongs to, action, target (``integration/<id>``, ``api_key/<id>``),
redacted before/after documents, the request id and the time. ``GET /audit`` serves it
to admins (tenant admins see their tenant's entries only).

Redaction: credential fields are references (``env:NAME``) by schema and stay; any other
value under a secret-looking key is replaced by ``***``; every value the control plane
has resolved as a secret is scrubbed from the text as a last line of defence.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Any

from control_plane.model import CREDENTIAL_REF_PATTERN
from control_plane.observability.logging import scrub
from control_plane.security.principal import Principal
from control_plane.store.protocol import AuditEntry, RegistryStore

__all__ = ["audit_body", "record", "redact"]

log = logging.getLogger(__name__)

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|api_?key|private|credential|authorization)", re.I
)


def redact(value: Any, *, key: str = "") -> Any:
    """A copy of ``value`` with secret-looking values replaced (references are kept)."""
    if isinstance(value, Mapping):
        return {str(k): redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key=key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and not CREDENTIAL_REF_PATTERN.match(value):
            return REDACTED
        return scrub(value)
    return value


async def record(
    store: RegistryStore,
    principal: Principal,
    *,
    action: str,
    target: str,
    tenant: str | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    request_id: str | None,
) -> None:
    entry = AuditEntry(
        at=dt.datetime.now(dt.UTC),
        principal=principal.id,
        tenant=tenant,
        action=action,
        target=target,
        before=None if before is None else redact(before),
        after=None if after is None else redact(after),
        request_id=request_id,
    )
    try:
        await store.append_audit(entry)
    except Exception:  # the mutation happened; losing its audit entry must be loud
        log.exception("could not write the audit entry", extra={"action": action, "target": target})


def audit_body(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "principal": entry.principal,
        "tenant": entry.tenant,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
        "request_id": entry.request_id,
    }
