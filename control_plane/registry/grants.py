"""``config/grants.yaml``: the operator's secret grants (see ``credential_policy``).

    grants:
      - ref: env:WEATHER_API_KEY          # the reference API registrations may use
        tenants: [acme]                   # who may use it ("*": every tenant)
        hosts: [api.weather.example.com]  # where its value may go (exact or *.suffix)

Read with the same bounded, line-marked YAML as the other files; every problem is reported
at once with its file:line, and an invalid file changes nothing (the last good grants stay).
A missing file means no grants: API registrations may then use no credential at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from control_plane.model import Integration
from control_plane.problems import RegistryError
from control_plane.registry.credential_policy import CredentialPolicy, Grant, Refusal
from control_plane.registry.validation import schema_problems
from control_plane.registry.watched_file import WatchedFile
from control_plane.registry.yamlmarks import load_marked

__all__ = ["GrantsFile", "grants_schema", "load_grants", "newly_withheld"]

log = logging.getLogger(__name__)

_HOST = r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?!\n)$|^\[?[0-9A-Fa-f:.]+\]?(?!\n)$"


def grants_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "grants": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["ref", "tenants", "hosts"],
                    "properties": {
                        "ref": {
                            "type": "string",
                            "pattern": r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)(?!\n)$",
                        },
                        "tenants": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "string",
                                "pattern": r"^(\*|[A-Za-z0-9._-]{1,64})(?!\n)$",
                            },
                        },
                        "hosts": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "pattern": _HOST},
                        },
                        "description": {"type": "string"},
                    },
                },
            }
        },
    }


def load_grants(path: Path) -> dict[str, Grant]:
    """The grants by reference; :class:`RegistryError` with every problem if invalid."""
    if not path.exists():
        return {}
    doc = load_marked(path.read_text(encoding="utf-8"), str(path))
    if doc.data is None and not doc.problems:
        return {}
    problems = list(doc.problems) or schema_problems(doc, grants_schema())
    grants: dict[str, Grant] = {}
    if not problems:
        for index, raw in enumerate((doc.data or {}).get("grants", [])):
            ref = raw["ref"]
            if ref in grants:
                problems.append(
                    doc.problem(
                        ("grants", index, "ref"),
                        f"{ref} is granted twice",
                        "keep one entry per reference (list every tenant and host in it)",
                    )
                )
                continue
            grants[ref] = Grant(
                ref=ref,
                tenants=frozenset(raw["tenants"]),
                hosts=tuple(h.lower().rstrip(".") for h in raw["hosts"]),
            )
    if problems:
        raise RegistryError(problems, f"{path} is invalid")
    return grants


class GrantsFile:
    """The grants file in force: loaded at start (an invalid file stops the start), then
    re-read on change; an invalid new file is logged and the last good grants stay."""

    def __init__(self, path: Path, base: CredentialPolicy) -> None:
        self.path = path
        self.policy = dataclasses.replace(base, grants_file=str(path))
        self._file = WatchedFile(path, load_grants, "grants", len)

    @property
    def error(self) -> RegistryError | None:
        return self._file.error

    def load(self) -> None:
        self.policy = dataclasses.replace(self.policy, grants=self._file.load())

    def reload(self) -> bool:
        """True when new grants took effect."""
        grants = self._file.reload()
        if grants is None:
            return False
        self.policy = dataclasses.replace(self.policy, grants=grants)
        return True


def newly_withheld(
    before: CredentialPolicy, after: CredentialPolicy, items: Iterable[Integration]
) -> list[tuple[Integration, dict[str, Refusal]]]:
    """The integrations whose credentials ``after`` withholds and ``before`` did not."""
    out = []
    for item in items:
        now = after.withheld(item)
        if set(now) - set(before.withheld(item)):
            out.append((item, now))
    return out
