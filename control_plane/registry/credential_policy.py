"""Which secret references an integration may use, and where their values may be sent.

A credential reference is a capability: whoever registers an integration naming
``env:STRIPE_SECRET_KEY`` with an upstream of their choice makes Envoy deliver that value
there. So a reference is usable only when the operator allows it:

* **Grants** (``config/grants.yaml``, operator-owned): each reference that API registrations
  may use is granted to tenants and bound to the destination hosts (exact names and
  ``*.suffix``) its value may be sent to. An API registration may use only references
  granted to its tenant, with an upstream host the grant binds. Declared integrations (the
  operator's own file) need no grant, but when a grant exists for a reference, its binding
  holds there too.
* **Reserved references**, refused whoever asks: the service's own settings — the
  ``INTEGRATION_SERVICE_*`` variables (the admin key among them, and any future service
  secret), ``POSTGRESQL_URL``, ``REDIS_URL``, ``CONSUL_*`` — and the reference the admin
  key setting itself names.
* **File roots**: a ``file:`` reference must stay under a configured root after
  normalisation; ``..``, symlinks leaving the root, ``/proc``, ``/sys``, ``/dev`` and
  anything but a regular file are refused.

The same policy is applied when a document is validated (refused before anything is
stored), when a grants file is reloaded (a narrowed grant withholds the credential at once)
and when values are resolved for Envoy (so a symlink re-pointed later is still refused).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from control_plane.model import CREDENTIAL_REF_PATTERN, Integration
from control_plane.problems import Problem
from control_plane.registry.token_mode import TOKEN_SLOTS, token_grant

__all__ = [
    "RESERVED_ENV",
    "RESERVED_ENV_PREFIXES",
    "CredentialPolicy",
    "Grant",
    "Refusal",
    "credential_slots",
    "host_matches",
    "raw_upstream",
]

# The service's own variables: never an integration credential.
RESERVED_ENV_PREFIXES = ("INTEGRATION_SERVICE_", "CONSUL_")
RESERVED_ENV = frozenset({"POSTGRESQL_URL", "REDIS_URL"})
# Never a credential file, whatever the roots say.
_SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))


@dataclass(frozen=True, slots=True)
class Grant:
    """One reference granted to tenants (``*``: every tenant) for destination hosts."""

    ref: str
    tenants: frozenset[str]
    hosts: tuple[str, ...]

    def allows(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants

    def binds(self, host: str) -> bool:
        return any(host_matches(pattern, host) for pattern in self.hosts)


def host_matches(pattern: str, host: str) -> bool:
    """``api.stripe.com`` matches itself only; ``*.example.com`` matches every name below
    ``example.com`` (not ``example.com`` itself). Case and a trailing dot do not count."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".").strip("[]")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True, slots=True)
class Refusal:
    rule: str  # reserved | file-root | not-granted | destination
    message: str
    fix: str


def credential_slots(item: Integration) -> Iterator[tuple[str, str]]:
    """(JSON pointer, reference) of every secret reference the integration names."""
    for slot, ref in sorted(item.credentials.items()):
        yield f"/credentials/{slot}", ref.ref
    tls = item.upstream.tls
    for name in ("ca_bundle", "client_cert", "client_key"):
        value = getattr(tls, name)
        if value is not None:
            yield f"/upstream/tls/{name}", value.ref


@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    grants: Mapping[str, Grant] = field(default_factory=dict)
    file_roots: tuple[Path, ...] = ()
    # Exact references reserved beside the variables above (the admin key's own target).
    reserved: frozenset[str] = frozenset()
    grants_file: str = "config/grants.yaml"

    def problems(self, item: Integration) -> list[Problem]:
        """Every refused reference of ``item``, as problems naming the slot and the rule."""
        return [_problem(pointer, refusal) for pointer, _, refusal in self._refused(item)]

    def withheld(self, item: Integration) -> dict[str, Refusal]:
        """The references of ``item`` whose values must not reach Envoy, with why."""
        return {ref: refusal for _, ref, refusal in self._refused(item)}

    def refusal(self, item: Integration, ref: str, slot: str | None = None) -> Refusal | None:
        """Why ``ref`` may not be used by ``item``, or None. In token mode the grant's
        slots (client id, secret, assertion key) go to the token endpoint, and the token
        minted from them goes to the upstream: their grant must bind both hosts, or a
        granted secret could mint tokens for a host its owner never named."""
        destinations = [(item.upstream.host, "the upstream host")]
        grant = token_grant(item)
        if grant is not None and slot in TOKEN_SLOTS:
            destinations.insert(0, (grant.token_host, "the token endpoint's host"))
        for host, what in destinations:
            refusal = self.refusal_for(
                ref,
                tenant=item.tenant,
                host=host,
                registered=item.source == "registered",
                what=what,
            )
            if refusal is not None:
                return refusal
        return None

    def _refused(self, item: Integration) -> Iterator[tuple[str, str, Refusal]]:
        for pointer, ref in credential_slots(item):
            refusal = self.refusal(item, ref, pointer.removeprefix("/credentials/"))
            if refusal is not None:
                yield pointer, ref, refusal

    def document_problems(self, document: Mapping[str, Any]) -> list[Problem]:
        """The refusals of an API document that did not validate (so was not built): each
        well-formed reference of its credentials, judged against its raw upstream URL."""
        credentials = document.get("credentials")
        if not isinstance(credentials, Mapping):
            return []
        target = raw_upstream(document.get("upstream"))
        tenant = document.get("tenant")
        out = []
        for slot, ref in sorted(credentials.items()):
            if not isinstance(ref, str) or not CREDENTIAL_REF_PATTERN.match(ref):
                continue  # the schema reports it, and it is never echoed
            refusal = self.refusal_for(
                ref,
                tenant=tenant if isinstance(tenant, str) else "default",
                host=target[1] if target is not None else "",
                registered=True,
            )
            if refusal is not None:
                out.append(_problem(f"/credentials/{slot}", refusal))
        return out

    def refusal_for(
        self,
        ref: str,
        *,
        tenant: str,
        host: str,
        registered: bool,
        what: str = "the upstream host",
    ) -> Refusal | None:
        scheme, _, target = ref.partition(":")
        if (
            ref in self.reserved
            or (scheme == "env" and _reserved_env(target))
            or (scheme == "file" and self._reserved_file(target))
        ):
            return Refusal(
                "reserved",
                f"{ref} is one of the service's own settings; it is never sent to an integration",
                "give the integration a reference of its own (e.g. env:<KIND>_API_KEY)",
            )
        if scheme == "file" and (why := self.file_refusal(target)) is not None:
            return Refusal(
                "file-root",
                f"{ref} is refused: {why}",
                "put the file under a directory of the file_roots setting "
                f"({', '.join(map(str, self.file_roots)) or 'none configured'})",
            )
        grant = self.grants.get(ref)
        if registered and (grant is None or not grant.allows(tenant)):
            return Refusal(
                "not-granted",
                f"{ref} is not granted to tenant {tenant!r}",
                f"the operator grants references in {self.grants_file} (ref, tenants, hosts)",
            )
        if grant is not None and not grant.binds(host):
            return Refusal(
                "destination",
                f"{ref} may be sent only to {', '.join(grant.hosts)}; {what} is {host!r}",
                f"use an upstream the grant binds, or ask the operator to extend the grant in "
                f"{self.grants_file}",
            )
        return None

    def _reserved_file(self, target: str) -> bool:
        """Whether ``file:<target>`` is, after normalisation and symlinks, a reserved file
        (``/a//b``, ``/a/./b`` or a link to it name the same file as ``/a/b``)."""
        files = [r.partition(":")[2] for r in self.reserved if r.startswith("file:")]
        if not files or not target.startswith("/"):
            return False
        asked = {os.path.normpath(target), str(Path(target).resolve())}
        return any({os.path.normpath(f), str(Path(f).resolve())} & asked for f in files)

    def file_refusal(self, target: str) -> str | None:
        """Why ``file:<target>`` may not be read, or None. Blocking (stat): cheap."""
        if not target.startswith("/"):
            return "the path is not absolute"
        if ".." in Path(target).parts:
            return "the path contains '..'"
        if not self.file_roots:
            return "no file_roots are configured"
        path = Path(os.path.normpath(target))
        roots = [root for root in self.file_roots if _under(path, root)]
        if not roots:
            return "the path is outside the file roots"
        real = path.resolve()
        if any(_under(real, tree) for tree in _SYSTEM_TREES):
            return f"it resolves into {real.parts[1] and '/' + real.parts[1]}"
        if not any(_under(real, root.resolve()) for root in roots):
            return "a symlink leads outside the file roots"
        try:
            mode = real.stat().st_mode
        except FileNotFoundError:
            return None  # not there yet (a Secret not mounted yet): reported as missing
        except OSError as exc:
            return f"it cannot be inspected ({exc.strerror})"
        if not stat.S_ISREG(mode):
            return "it is not a regular file"
        return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def raw_upstream(upstream: Any) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an upstream URL in a document that did not validate."""
    url = upstream.get("url") if isinstance(upstream, Mapping) else upstream
    if not isinstance(url, str) or "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname, port


def _problem(pointer: str, refusal: Refusal) -> Problem:
    return Problem(pointer, refusal.message, refusal.fix, rule=refusal.rule)


def _reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
