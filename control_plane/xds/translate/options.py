"""Inputs and outputs of the translator: options, the resource map and the result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

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
    # Token mode: the access token the broker holds for each integration id, while it is
    # valid (absent: none, and the integration's token secret is served empty).
    tokens: Mapping[str, str] = field(default_factory=dict)
    # ``scope: global`` quotas: envoyproxy/ratelimit's gRPC ``host:port`` (operator settings
    # only, never the API). None: a global integration is refused, never served as pod.
    ratelimit_address: str | None = None

    def replica_neutral(self) -> TranslateOptions | None:
        """These options with the node-local directories (access logs, cache) replaced by
        fixed stand-ins, or None when none is set. Listeners translated with them give the
        versions every replica computes alike for the same registry, whatever its data
        directory: the served listeners keep the real paths of this replica's Envoy."""
        if self.access_log_dir is None and self.cache_root == NEUTRAL_CACHE_ROOT:
            return None
        return replace(
            self,
            cache_root=NEUTRAL_CACHE_ROOT,
            access_log_dir=None if self.access_log_dir is None else NEUTRAL_ACCESS_LOG_DIR,
        )


NEUTRAL_CACHE_ROOT = "/var/cache/integration-service"
NEUTRAL_ACCESS_LOG_DIR = "/var/log/integration-service"


@dataclass(frozen=True, slots=True)
class TranslateResult:
    """The resources plus what could not be configured (named by id and reference only).

    ``versions``: for resources whose content holds node-local paths, the version computed
    from their replica-neutral form (see :meth:`TranslateOptions.replica_neutral`)."""

    resources: Resources
    warnings: list[str] = field(default_factory=list)
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
