"""The HTTP filters of an integration: the listener chain and the cluster's upstream chain.

Listener chain: ``local_ratelimit`` -> ``cache_v2`` (when enabled) -> ``router``.
Credential injection and SigV4 signing are *upstream* filters of the integration's cluster
(``HttpProtocolOptions.http_filters``), for Envoy reasons measured on 1.40:

* ``cache_v2`` never serves or stores a request that carries ``Authorization``
  (``canServeRequestFromCache``), so injecting before the cache disables caching;
* only the cluster's upstream filters run on every stream to the upstream, whichever
  listener or path (cached miss, uncacheable request, retry) sent it.

As upstream filters they also run once per attempt (a retry gets a fresh SigV4 date) and
see the Host already rewritten by the route. Token mode (``auth0``, ``http`` with a token
block) injects the token the control plane minted (``control_plane.tokens``) from the SDS
secret ``token/<id>``; Envoy's own OAuth2 credential is not used (it cannot send an
``audience``, envoyproxy/envoy#42037, and kept injecting an expired token while the IdP was
down, envoyproxy/envoy#44674).

Cache misses take a *fill path*. On a miss ``cache_v2`` does not continue the filter chain:
it fetches through an async HTTP client straight to a cluster, which skips the router and
the route -- no ``host_rewrite_literal`` (the SaaS would see ``Host: 127.0.0.1:<port>``),
no timeout, no retries. As Envoy's cache_v2 docs recommend, ``override_upstream_cluster``
points that fetch at ``<id>_cache_fill``, a cluster whose only endpoint is a second
listener of the integration (same RDS route table, router only), so a miss is routed
exactly like an uncached request. Envoy's ``internal_listener`` would do this without a
socket but needs a bootstrap extension the shared bootstrap does not load; the fill
listener therefore listens on an abstract Unix socket (no file, no port to allocate).
https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/cache_v2_filter
"""

from __future__ import annotations

import functools
from typing import Any

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.common.async_files.v3 import async_file_manager_pb2
from envoy.extensions.common.aws.v3 import credential_provider_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.extensions.filters.http.aws_request_signing.v3 import aws_request_signing_pb2
from envoy.extensions.filters.http.cache_v2.v3 import cache_pb2
from envoy.extensions.filters.http.credential_injector.v3 import credential_injector_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.http.upstream_codec.v3 import upstream_codec_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.http.cache_v2.file_system_http_cache.v3 import (
    file_system_http_cache_pb2,
)
from envoy.extensions.http.injected_credentials.generic.v3 import generic_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2  # type: ignore[import-untyped]

from control_plane.model import Integration, RateBucket
from control_plane.registry.token_mode import token_grant
from control_plane.xds.translate.global_limit import is_global, ratelimit_filter
from control_plane.xds.translate.messages import duration, pack, typed_extension
from control_plane.xds.translate.options import TranslateOptions
from control_plane.xds.translate.secrets import SecretBook

__all__ = [
    "TENANT_DESCRIPTOR_KEY",
    "cache_fill_address",
    "cache_fill_http_filters",
    "cache_fill_name",
    "cache_path",
    "http_filters",
    "upstream_filters",
]

# Descriptor key the route's rate_limits action emits for the tenant header.
TENANT_DESCRIPTOR_KEY = "tenant"


def _filter(name: str, message: Any) -> Any:
    return hcm_pb2.HttpFilter(name=name, typed_config=pack(message))


def _token_bucket(bucket: RateBucket, into: Any) -> None:
    # `requests` tokens every `per` seconds, holding at most `burst`.
    into.max_tokens = bucket.burst
    into.tokens_per_fill.value = bucket.requests
    into.fill_interval.CopyFrom(duration(bucket.per))


@functools.cache
def _always() -> Any:
    # Shared (built once): only ever copied into the filter config.
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(
            numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
        )
    )


def _local_ratelimit(item: Integration) -> Any | None:
    rl = item.policies.rate_limit
    if rl is None:
        return None
    config = local_rate_limit_pb2.LocalRateLimit(
        # Stat: <id>.http_local_rate_limit.rate_limited
        stat_prefix=item.id,
        filter_enabled=_always(),
        filter_enforced=_always(),
    )
    _token_bucket(rl.bucket, config.token_bucket)
    # Per-tenant buckets: the rate_limits action below turns the tenant header into a
    # ("tenant", value) descriptor; a listed tenant also drains the integration-wide
    # bucket (Envoy's default), which models the upstream's account-wide quota.
    for tenant, bucket in sorted(rl.per_tenant.items()):
        descriptor = config.descriptors.add()
        descriptor.entries.add(key=TENANT_DESCRIPTOR_KEY, value=tenant)
        _token_bucket(bucket, descriptor.token_bucket)
    if rl.scope == "fleet":
        # Each Envoy takes 1/N of every bucket, N the live members of the bootstrap's local
        # cluster (the fleet membership the control plane serves over EDS).
        config.local_cluster_rate_limit.SetInParent()
    if rl.response_headers:
        config.enable_x_ratelimit_headers = ratelimit_pb2.DRAFT_VERSION_03
    if rl.per_tenant:
        # In the filter, not on the route: Envoy 1.40 warns that route-level rate_limits
        # "will be ignored in the future" for local rate limits. Without the header no
        # descriptor is produced and only the integration-wide bucket applies.
        config.rate_limits.append(
            route_components_pb2.RateLimit(
                actions=[
                    route_components_pb2.RateLimit.Action(
                        request_headers=route_components_pb2.RateLimit.Action.RequestHeaders(
                            header_name=rl.tenant_header, descriptor_key=TENANT_DESCRIPTOR_KEY
                        )
                    )
                ]
            )
        )
    return _filter("envoy.filters.http.local_ratelimit", config)


def cache_path(item: Integration, options: TranslateOptions) -> str:
    return f"{options.cache_root}/{item.id}/{options.cache_generations.get(item.id, 0)}"


def cache_fill_name(item: Integration) -> str:
    """Name of the fill listener and of the cluster that reaches it (see the module doc).
    "_" never occurs in an integration id and the name has no "." (stat tag extraction)."""
    return f"{item.id}_cache_fill"


def cache_fill_address(item: Integration, options: TranslateOptions) -> str:
    """The fill listener's abstract Unix socket ("@": Linux abstract namespace, gone with
    the process, no stale file). Unique per host because the integration's TCP listen
    address is. It bypasses the local rate limit (already applied on the main listener),
    so like the main listener it is reachable only from the sidecar's network namespace."""
    return f"@integration-service/cache-fill/{options.listen_address}:{item.listen_port}"


def _cache(item: Integration, options: TranslateOptions) -> Any | None:
    cache = item.policies.cache
    if not cache.enabled:
        return None
    store = file_system_http_cache_pb2.FileSystemHttpCacheV2Config(
        # One shared worker thread for every integration's cache file I/O (same id =
        # same manager; the configs must then be identical, which they are).
        #
        # The manager probes O_TMPFILE support once per process (std::call_once) on its
        # first cache insert. If that insert's directory is missing, the probe fails and
        # the manager falls back for good to mkstemp+unlink files, whose final linkat()
        # always fails with ENOENT: from then on *no* cache sharing the manager stores
        # anything (measured on 1.40; async_file_manager_thread_pool.cc). Envoy 1.40's
        # cache_v2 store never creates cache_path (``create_cache_path`` is not read), so
        # the control plane creates the directory before it pushes the configuration.
        manager_config=async_file_manager_pb2.AsyncFileManagerConfig(
            id="integration-service",
            thread_pool=async_file_manager_pb2.AsyncFileManagerConfig.ThreadPool(thread_count=1),
        ),
        # One path per integration, so Envoy's per-path size stats are per integration.
        cache_path=cache_path(item, options),
        max_cache_size_bytes=wrappers_pb2.UInt64Value(value=cache.max_total_bytes),
        max_individual_cache_entry_size_bytes=wrappers_pb2.UInt64Value(value=cache.max_entry_bytes),
    )
    config = cache_pb2.CacheV2Config(
        typed_config=pack(store), override_upstream_cluster=cache_fill_name(item)
    )
    return _filter("envoy.filters.http.cache_v2", config)


def _generic_credential(item: Integration, book: SecretBook) -> Any | None:
    """stripe: ``Authorization: Bearer <key>``; http / email-http: header and prefix from
    settings. The SDS secret holds the complete header value."""
    if item.kind == "stripe":
        header, prefix = "Authorization", "Bearer "
    else:
        header = str(item.settings.get("api_key_header", "Authorization"))
        prefix = str(item.settings.get("api_key_prefix", "Bearer "))
    secret = book.generic(
        item, "api_key", "requests go out without the API key", prefix.encode("utf-8")
    )
    if secret is None:
        return None
    return typed_extension(
        "envoy.http.injected_credentials.generic",
        generic_pb2.Generic(credential=secret, header=header),
    )


def _token_credential(item: Integration, book: SecretBook) -> Any:
    """Token mode: ``Authorization: Bearer <token>`` from the integration's own token
    secret, which the control plane replaces before the token expires and empties when it
    cannot (see ``secrets``)."""
    return typed_extension(
        "envoy.http.injected_credentials.generic",
        generic_pb2.Generic(credential=book.token(item), header="Authorization"),
    )


def _credential_injector(item: Integration, book: SecretBook) -> Any | None:
    tokens = token_grant(item) is not None
    if tokens:
        credential = _token_credential(item, book)
    elif item.kind in ("stripe", "http", "email"):
        credential = _generic_credential(item, book)
    else:
        return None
    if credential is None:
        return None
    # overwrite: vendor SDKs (Stripe's among them) refuse to run without a key and always
    # send a placeholder Authorization header; without overwrite Envoy would keep it.
    # Token mode lets a request through while the token secret is empty (no valid token):
    # the vendor answers 401 itself; the app's own Authorization was removed before.
    return _filter(
        "envoy.filters.http.credential_injector",
        credential_injector_pb2.CredentialInjector(
            credential=credential, overwrite=True, allow_request_without_credential=tokens
        ),
    )


def _aws_request_signing(item: Integration, book: SecretBook) -> Any | None:
    """SigV4 for storage. Envoy 1.40's AWS credential providers (inline, environment,
    credentials file, IMDS, web identity, ...) have no SDS source, and an inline provider
    would put the key in the listener. So the keys are read by Envoy from an AWS
    shared-credentials *file*: the ``secret_access_key`` reference must be ``file:`` and
    name an INI file with a ``[default]`` profile holding ``aws_access_key_id`` and
    ``aws_secret_access_key``. Any other reference: no signing, and a warning."""
    ref = item.credentials.get("secret_access_key")
    if ref is None:
        return None
    if ref.scheme != "file":
        book.warnings.append(
            f"{item.id}: {ref.ref} cannot reach Envoy's SigV4 signer (no SDS support); "
            "use a file: reference to an AWS credentials file; requests go out unsigned"
        )
        return None
    book.value(item, ref, "Envoy reads the credentials file itself; signing may fail")
    service = str(item.settings.get("service", "s3"))
    config = aws_request_signing_pb2.AwsRequestSigning(
        service_name=service,
        region=str(item.settings.get("region", "us-east-1")),
        # The route already rewrites Host; naming it here too makes the signed Host explicit.
        host_rewrite=item.upstream.authority,
        # S3 accepts UNSIGNED-PAYLOAD over TLS; otherwise Envoy must buffer whole uploads
        # to hash them (and answers 413 past its buffer limit).
        use_unsigned_payload=service == "s3",
        credential_provider=credential_provider_pb2.AwsCredentialProvider(
            # Only this file: no environment/IMDS lookups from the sidecar.
            custom_credential_provider_chain=True,
            credentials_file_provider=credential_provider_pb2.CredentialsFileCredentialProvider(
                credentials_data_source=base_pb2.DataSource(filename=ref.target),
                profile="default",
            ),
        ),
    )
    return _filter("envoy.filters.http.aws_request_signing", config)


@functools.cache
def _router() -> Any:
    # Shared (built once): the chains it is put into copy it.
    # No x-envoy-* headers towards third parties (and none inside a SigV4 signature).
    return _filter("envoy.filters.http.router", router_pb2.Router(suppress_envoy_headers=True))


def _upstream_headers(item: Integration) -> Any:
    return _header_hygiene(token_grant(item) is not None)


@functools.cache
def _header_hygiene(token_mode: bool) -> Any:
    """Header hygiene the router's ``suppress_envoy_headers`` gives, again on the cluster:
    on a cache miss ``cache_v2``'s async client adds ``x-envoy-internal`` and
    ``x-forwarded-for``, and the fill listener's router forwards them. In token mode the
    app's own ``Authorization`` goes too: the injector leaves it in place while the token
    secret is empty, and the only bearer token that reaches the vendor is a minted one.
    Shared (built once per mode)."""
    mutations = [
        mutation_rules_pb2.HeaderMutation(remove="x-envoy-internal"),
        mutation_rules_pb2.HeaderMutation(remove="x-forwarded-for"),
    ]
    if token_mode:
        mutations.append(mutation_rules_pb2.HeaderMutation(remove="authorization"))
    return _filter(
        "envoy.filters.http.header_mutation",
        header_mutation_pb2.HeaderMutation(
            mutations=header_mutation_pb2.Mutations(request_mutations=mutations)
        ),
    )


def upstream_filters(item: Integration, book: SecretBook) -> list[Any]:
    """The cluster's upstream HTTP filters (every stream to the upstream runs them).
    Some are shared (built once): put them into a message, which copies them."""
    filters = [
        f
        for f in (
            _upstream_headers(item),
            _credential_injector(item, book),
            _aws_request_signing(item, book) if item.kind == "storage" else None,
        )
        if f is not None
    ]
    return [*filters, _upstream_codec()]


@functools.cache
def _upstream_codec() -> Any:
    # An upstream filter chain must end with the codec filter. Shared (built once).
    return _filter("envoy.filters.http.upstream_codec", upstream_codec_pb2.UpstreamCodec())


def http_filters(item: Integration, options: TranslateOptions) -> list[Any]:
    """The listener's HTTP filter chain (the router is shared: see ``upstream_filters``)."""
    # scope global: the service's quota instead of a local bucket (global_limit.py).
    limit = ratelimit_filter(item) if is_global(item) else _local_ratelimit(item)
    downstream = [f for f in (limit, _cache(item, options)) if f is not None]
    return [*downstream, _router()]


def cache_fill_http_filters() -> list[Any]:
    """The fill listener's chain: the router alone. The local rate limit already ran on the
    main listener, and a cache here would look the request up a second time."""
    return [_router()]
