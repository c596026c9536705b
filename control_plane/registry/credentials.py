"""Resolve credential references (``env:NAME``, ``file:/path``) to values for SDS only.

Values leave this module only toward the translator, which puts them in SDS ``Secret``
resources. Each resolved value is registered with the log scrubber, so even an accidental
log line cannot print it. Missing references are reported by reference, never by value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from control_plane.model import Integration
from control_plane.observability.logging import register_secret
from control_plane.registry.credential_policy import CredentialPolicy

__all__ = ["ResolvedCredentials", "resolve_credentials"]


@dataclass(frozen=True, slots=True)
class ResolvedCredentials:
    values: Mapping[str, str] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)  # ref -> why
    # integration id -> {ref: why}: references the policy refuses for that integration;
    # their values are not given to it (a reference may be granted to one tenant only).
    withheld: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def values_for(self, item: Integration) -> Mapping[str, str]:
        """The values ``item`` may use: every resolved one but those withheld from it."""
        refused = self.withheld.get(item.id)
        if not refused:
            return self.values
        return {ref: value for ref, value in self.values.items() if ref not in refused}


def resolve_credentials(
    items: Iterable[Integration],
    environ: Mapping[str, str],
    policy: CredentialPolicy | None = None,
) -> ResolvedCredentials:
    """Read the values of the references ``items`` name, and only of those the
    ``policy`` allows at least one of them (checked again now: a symlink re-pointed since
    registration, or a narrowed grant, withholds the value)."""
    values: dict[str, str] = {}
    missing: dict[str, str] = {}
    withheld: dict[str, dict[str, str]] = {}
    wanted: set[str] = set()
    for item in items:
        refused = policy.withheld(item) if policy is not None else {}
        if refused:
            withheld[item.id] = {ref: f"{r.rule}: {r.message}" for ref, r in refused.items()}
        wanted.update(r.ref for r in item.credential_refs() if r.ref not in refused)
    for ref in sorted(wanted):
        scheme, target = ref.split(":", 1)
        if scheme == "env":
            value = environ.get(target)
            if value is None or value == "":
                missing[ref] = f"environment variable {target} is not set"
                continue
        else:
            try:
                # The real path: the policy judged where the symlinks lead, read that.
                value = Path(target).resolve().read_text(encoding="utf-8")
            except OSError as exc:
                missing[ref] = f"cannot read {target}: {exc.strerror}"
                continue
            if not target.endswith((".pem", ".crt", ".key")):
                value = value.strip()
        register_secret(value)
        values[ref] = value
    return ResolvedCredentials(values=values, missing=missing, withheld=withheld)
