"""What the registry writes beside its mutations: the outbox events (CloudEvents) and the
problems of a file that clashes with the store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.cloudevents import make_event
from control_plane.model import Integration
from control_plane.problems import Problem
from control_plane.registry.credential_policy import Refusal
from control_plane.store.protocol import OutboxEvent

__all__ = ["declared_clashes", "registry_event", "withheld_event"]


def registry_event(
    kind: str,
    item: Integration,
    correlation_id: str | None,
    extra: Mapping[str, Any] | None = None,
) -> OutboxEvent:
    envelope = make_event(
        kind,
        {"id": item.id, "kind": item.kind, "version": item.version, **(extra or {})},
        tenant=item.tenant,
        correlation_id=correlation_id,
        subject=item.id,
    )
    return OutboxEvent(id=envelope["id"], type=kind, envelope=envelope)


def withheld_event(item: Integration, why: Mapping[str, Refusal]) -> OutboxEvent:
    """``integration.credential_withheld``: references and rules, never a value."""
    withheld = [
        {"ref": ref, "rule": refusal.rule, "reason": refusal.message}
        for ref, refusal in sorted(why.items())
    ]
    return registry_event("integration.credential_withheld", item, None, {"withheld": withheld})


def declared_clashes(
    file: str, declared: Mapping[str, Integration], registered: Mapping[str, Integration]
) -> list[Problem]:
    """Ids of the file that the API has registered already."""
    return [
        Problem(
            f"/integrations/{i}",
            f"id {ident!r} is already registered through the API",
            "rename it in the file or delete the registered one first",
            file=file,
        )
        for i, ident in enumerate(declared)
        if ident in registered
    ]
