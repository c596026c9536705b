"""CloudEvents 1.0 JSON envelopes (structured mode) with tenant and correlation extensions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["EVENT_SOURCE", "make_event"]

EVENT_SOURCE = "/integration-service"


def make_event(
    event_type: str,
    data: Mapping[str, Any],
    *,
    tenant: str | None = None,
    correlation_id: str | None = None,
    subject: str | None = None,
    source: str = EVENT_SOURCE,
) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope; ``id`` is unique so consumers can de-duplicate."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": dict(data),
    }
    if subject:
        envelope["subject"] = subject
    if tenant:
        envelope["tenant"] = tenant
    if correlation_id:
        envelope["correlationid"] = correlation_id
    return envelope
