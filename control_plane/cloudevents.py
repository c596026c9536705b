"""CloudEvents 1.0 JSON envelopes (structured mode) with tenant and correlation extensions."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["EVENT_SOURCE", "envelope_problems", "make_event"]

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


# CloudEvents 1.0 attribute names: lower-case ASCII letters and digits only
# (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md#naming-conventions).
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_REQUIRED = ("id", "source", "specversion", "type")


def envelope_problems(envelope: Any) -> list[str]:
    """Why ``envelope`` is not a CloudEvents 1.0 JSON event (empty when it is one).

    Checks the REQUIRED context attributes (non-empty strings, ``specversion`` exactly
    ``1.0``), the OPTIONAL ones this service reads (``time`` is RFC 3339, ``subject`` and
    ``datacontenttype`` are strings) and the attribute naming rule.
    """
    if not isinstance(envelope, Mapping):
        return ["not a JSON object"]
    problems = [
        f"{name}: required, a non-empty string"
        for name in _REQUIRED
        if not isinstance(envelope.get(name), str) or not envelope[name]
    ]
    if isinstance(envelope.get("specversion"), str) and envelope["specversion"] != "1.0":
        problems.append(f"specversion: {envelope['specversion']!r} is not 1.0")
    for name in ("subject", "datacontenttype", "tenant", "correlationid"):
        if name in envelope and not isinstance(envelope[name], str):
            problems.append(f"{name}: must be a string")
    if "time" in envelope:
        try:
            dt.datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00"))
        except ValueError:
            problems.append("time: not an RFC 3339 timestamp")
    problems.extend(
        f"{name}: not a valid attribute name"
        for name in envelope
        if name not in ("data", "data_base64") and not _ATTRIBUTE_NAME.match(str(name))
    )
    return problems
