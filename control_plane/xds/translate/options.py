"""Inputs and outputs of the translator: options, the resource map and the result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message  # type: ignore[import-untyped]

__all__ = ["Resources", "SecretValues", "TranslateOptions", "TranslateResult"]

# type URL -> resource name -> message: what ``Snapshot.build(resources)`` consumes.
Resources = dict[str, dict[str, Message]]

# Resolved credential values keyed by their reference string ("env:NAME", "file:/path").
SecretValues = Mapping[str, bytes | str]


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    """Deployment facts the registry does not hold. All defaults suit the embedded sidecar."""

    listen_address: str = "127.0.0.1"
    # Trust store for upstream TLS when an integration names no CA bundle. A *file* path, not
    # an SDS secret: Envoy watches it and it never carries a credential.
    system_ca_file: str = "/etc/ssl/certs/ca-certificates.crt"
    # Per-integration generation, written into the cluster's metadata. Changing it changes
    # the Cluster resource, so Envoy rebuilds the cluster and forgets outlier ejections: this
    # is how the control plane resets a tripped circuit breaker.
    generations: Mapping[str, int] = field(default_factory=dict)
    # The response cache of integration ``id`` lives in
    # ``f"{cache_root}/{id}/{cache_generations.get(id, 0)}"``; bumping the generation points
    # the filter at an empty directory, which is the only purge Envoy's file cache offers.
    cache_root: str = "/var/cache/integration-service"
    cache_generations: Mapping[str, int] = field(default_factory=dict)
    # When set, every HTTP listener writes a JSON access log to ``{access_log_dir}/{id}.log``.
    # The directory must exist: Envoy opens the file when it builds the listener, creates no
    # directories, and rejects (NACKs) the listener otherwise.
    access_log_dir: str | None = None
    # Endpoints of ``discovery: consul`` integrations, keyed by integration id.
    endpoints: Mapping[str, Sequence[tuple[str, int]]] = field(default_factory=dict)
    # Vetted resolution: the addresses the control plane accepted for each host name it
    # resolves (``endpoints.vetted_name``), keyed by that name. Keyed by name, not by id, so
    # an integration whose host changes is never served the old name's addresses.
    resolved: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TranslateResult:
    """The resources plus what could not be configured (named by id and reference only)."""

    resources: Resources
    warnings: list[str] = field(default_factory=list)
