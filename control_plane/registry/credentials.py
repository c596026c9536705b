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

__all__ = ["ResolvedCredentials", "resolve_credentials"]


@dataclass(frozen=True, slots=True)
class ResolvedCredentials:
    values: Mapping[str, str] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)  # ref -> why


def resolve_credentials(
    items: Iterable[Integration], environ: Mapping[str, str]
) -> ResolvedCredentials:
    values: dict[str, str] = {}
    missing: dict[str, str] = {}
    for ref in sorted({r.ref for item in items for r in item.credential_refs()}):
        scheme, target = ref.split(":", 1)
        if scheme == "env":
            value = environ.get(target)
            if value is None or value == "":
                missing[ref] = f"environment variable {target} is not set"
                continue
        else:
            try:
                value = Path(target).read_text(encoding="utf-8")
            except OSError as exc:
                missing[ref] = f"cannot read {target}: {exc.strerror}"
                continue
            if not target.endswith((".pem", ".crt", ".key")):
                value = value.strip()
        register_secret(value)
        values[ref] = value
    return ResolvedCredentials(values=values, missing=missing)
