"""Workloads of the shared topology: who a connecting Envoy is, and what it may run.

An Envoy in an application pod proves an *identity* with its client certificate (a URI
SAN such as ``spiffe://cluster.local/ns/shop/sa/checkout``, or a DNS SAN); the node id and
metadata it sends are labels, never trusted. ``config/workloads.yaml`` maps identities to
workloads, each owned by one tenant::

    workloads:
      - name: checkout                  # what integrations list in ``workloads:``
        tenant: acme                    # the only tenant whose integrations it may run
        identities:                     # certificate SANs that are this workload
          - spiffe://cluster.local/ns/shop/sa/checkout
          - dns:checkout.shop.svc       # a DNS SAN is written dns:<name>

    # Optional: an identity no entry names, if it is a SPIFFE ID of this trust domain
    # shaped spiffe://<domain>/ns/<namespace>/sa/<account>, is the workload
    # "<namespace>.<account>" of the tenant "<namespace>".
    derive_from_spiffe: cluster.local

A workload runs an integration when both have the same tenant and the integration's
``workloads`` is empty (every workload of its tenant) or names it. The tenant check is not
optional: no entry of any file can give a workload another tenant's integration. Read with
the bounded, line-marked YAML of the other files; an invalid file changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_plane.model import Integration
from control_plane.problems import RegistryError
from control_plane.registry.validation import schema_problems
from control_plane.registry.watched_file import WatchedFile
from control_plane.registry.yamlmarks import load_marked

__all__ = ["Workload", "WorkloadBook", "WorkloadsFile", "load_workloads", "workloads_schema"]

log = logging.getLogger(__name__)

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(?!\n)$"
_TENANT = r"^[A-Za-z0-9._-]{1,64}(?!\n)$"
_IDENTITY = r"^([a-z][a-z0-9+.-]*://\S{1,2000}|dns:[A-Za-z0-9*]([A-Za-z0-9.-]{0,252}))(?!\n)$"
_DOMAIN = r"^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?(?!\n)$"
_SPIFFE_PART = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


def workloads_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "derive_from_spiffe": {"type": "string", "pattern": _DOMAIN},
            "workloads": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "tenant", "identities"],
                    "properties": {
                        "name": {"type": "string", "pattern": _NAME},
                        "tenant": {"type": "string", "pattern": _TENANT},
                        "identities": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "pattern": _IDENTITY},
                        },
                        "description": {"type": "string"},
                    },
                },
            },
        },
    }


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    tenant: str
    identities: tuple[str, ...] = ()
    derived: bool = False

    def may_run(self, item: Integration) -> bool:
        """True when this workload receives ``item``'s resources and secrets."""
        if item.tenant != self.tenant:
            return False
        return not item.workloads or self.name in item.workloads


@dataclass(frozen=True, slots=True)
class WorkloadBook:
    """The workloads in force, by name, and the identity each certificate SAN maps to."""

    workloads: Mapping[str, Workload] = field(default_factory=dict)
    derive_from_spiffe: str | None = None
    _by_identity: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, workloads: Iterable[Workload], derive_from_spiffe: str | None = None
    ) -> WorkloadBook:
        listed = {w.name: w for w in workloads}
        by_identity = {ident: w.name for w in listed.values() for ident in w.identities}
        return cls(listed, derive_from_spiffe, by_identity)

    def identify(self, uris: Iterable[str], dns_names: Iterable[str]) -> Workload | None:
        """The workload a certificate with these SANs is, or None (refused).

        Declared identities are looked up first; then, when configured, a SPIFFE ID of the
        trust domain derives one. Two SANs naming two different workloads is refused:
        one certificate must be one workload.
        """
        uris, dns_names = list(uris), list(dns_names)
        found = {
            self._by_identity[i]
            for i in [*uris, *(f"dns:{name.lower()}" for name in dns_names)]
            if i in self._by_identity
        }
        if len(found) == 1:
            return self.workloads[found.pop()]
        if found:
            log.warning("certificate names several workloads", extra={"workloads": sorted(found)})
            return None
        derived = {w for w in (self._derive(uri) for uri in uris) if w is not None}
        return derived.pop() if len(derived) == 1 else None

    def _derive(self, uri: str) -> Workload | None:
        domain = self.derive_from_spiffe
        if domain is None or not uri.startswith(f"spiffe://{domain}/"):
            return None
        parts = uri[len(f"spiffe://{domain}/") :].split("/")
        if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
            return None
        namespace, account = parts[1], parts[3]
        if not (_SPIFFE_PART.match(namespace) and _SPIFFE_PART.match(account)):
            return None
        name = f"{namespace}.{account}"
        declared = self.workloads.get(name)
        if declared is not None:
            # A declared workload of that name is only reached through its own identities.
            return None
        return Workload(name, namespace, (uri,), derived=True)


def load_workloads(path: Path) -> WorkloadBook:
    """The workloads file as a book; :class:`RegistryError` naming every problem."""
    if not path.exists():
        return WorkloadBook()
    doc = load_marked(path.read_text(encoding="utf-8"), str(path))
    if doc.data is None and not doc.problems:
        return WorkloadBook()
    problems = list(doc.problems) or schema_problems(doc, workloads_schema())
    workloads: list[Workload] = []
    if not problems:
        names: set[str] = set()
        owner: dict[str, str] = {}
        for index, raw in enumerate((doc.data or {}).get("workloads", [])):
            if raw["name"] in names:
                problems.append(
                    doc.problem(
                        ("workloads", index, "name"),
                        f"workload {raw['name']!r} is declared twice",
                        "keep one entry per workload (list all its identities in it)",
                    )
                )
                continue
            names.add(raw["name"])
            # DNS names are case-insensitive: kept lowercase, as the gate compares them.
            identities = tuple(i.lower() if i.startswith("dns:") else i for i in raw["identities"])
            for position, identity in enumerate(identities):
                if identity in owner:
                    problems.append(
                        doc.problem(
                            ("workloads", index, "identities", position),
                            f"{identity} is already the identity of workload {owner[identity]!r}",
                            "give each certificate identity to one workload",
                        )
                    )
                owner[identity] = raw["name"]
            workloads.append(Workload(raw["name"], raw["tenant"], identities))
    if problems:
        raise RegistryError(problems, f"{path} is invalid")
    return WorkloadBook.of(workloads, (doc.data or {}).get("derive_from_spiffe"))


class WorkloadsFile:
    """The workloads file in force: loaded at start (an invalid file stops the start), then
    re-read on change; an invalid new file is logged and the last good book stays."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.book = WorkloadBook()
        self._file = WatchedFile(path, load_workloads, "workloads", lambda b: len(b.workloads))

    @property
    def error(self) -> RegistryError | None:
        return self._file.error

    def load(self) -> None:
        self.book = self._file.load()

    def reload(self) -> bool:
        """True when a new book took effect."""
        book = self._file.reload()
        if book is None:
            return False
        self.book = book
        return True
