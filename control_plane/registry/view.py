"""One consistent state of the registry, as its subscribers (the xDS pipeline, the API,
probes, discovery) see it, and the outcome of a file reload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from control_plane.model import Integration
from control_plane.problems import Problem, RegistryError
from control_plane.registry.credential_policy import CredentialPolicy

__all__ = ["RegistryView", "ReloadResult"]


@dataclass(frozen=True, slots=True)
class RegistryView:
    """One consistent state of the registry; ``generation`` grows with every change."""

    items: Mapping[str, Integration]
    generation: int = 0
    file_error: RegistryError | None = None
    # The credential policy in force for this view: the pipeline withholds from Envoy every
    # value it refuses, so a narrowed grant takes effect with the view it comes with. The
    # RegistryService always sets it; None (views built by hand, in tests) governs nothing.
    policy: CredentialPolicy | None = None

    def get(self, integration_id: str) -> Integration | None:
        return self.items.get(integration_id)

    def enabled(self) -> list[Integration]:
        return [i for i in self.items.values() if i.enabled]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    changed: bool
    problems: Sequence[Problem] = field(default_factory=tuple)
