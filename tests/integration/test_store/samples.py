"""The integration documents and outbox events the store tests write."""

from __future__ import annotations

from typing import Any

from control_plane.store.protocol import OutboxEvent

__all__ = ["doc", "event"]


def doc(name: str, **extra: Any) -> dict[str, Any]:
    return {"id": name, "kind": "http", "upstream": {"host": f"{name}.example.com"}, **extra}


def event(event_id: str, kind: str = "integration.created") -> OutboxEvent:
    envelope = {"specversion": "1.0", "id": event_id, "type": kind, "data": {"n": event_id}}
    return OutboxEvent(id=event_id, type=kind, envelope=envelope)
