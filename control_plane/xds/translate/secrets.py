"""SDS ``Secret`` resources: the only place a credential value ever appears.

Listeners and clusters name a secret through an ``SdsSecretConfig`` whose config source is
ADS; Envoy then subscribes to it by name and keeps the listener/cluster *warming* until it
arrives. A reference to a secret we cannot produce would therefore block that resource (and
fail the snapshot consistency check), so a missing value yields no reference at all plus a
warning naming the integration and the reference -- never the value.

Names: ``<id>/<credential-slot>`` (generic secrets), ``<id>/client-cert`` (mTLS key pair),
``<id>/ca`` (validation context of a private CA bundle), ``token/<id>`` (the access token
the broker minted, token mode).

A token secret always exists, so the cluster naming it never warms: without a valid token
it is served *empty*. Envoy 1.40's generic credential then fails with "Failed to get
credential from secret" and, with ``allow_request_without_credential``, forwards the request
without the header (measured: ``credential_injector.failed`` counts it), which is how an
expired token stops being sent.
https://github.com/envoyproxy/envoy/blob/main/source/extensions/http/injected_credentials/generic/generic_impl.cc
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from control_plane.model import CredentialRef, Integration
from control_plane.registry.token_mode import token_secret_name
from control_plane.xds.translate.messages import ads
from control_plane.xds.translate.options import SecretValues

__all__ = ["SecretBook", "sds"]


def sds(name: str) -> Any:
    """A reference to the SDS secret ``name``, delivered over ADS."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads())


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class SecretBook:
    """Collects the SDS secrets of one translation and the warnings for missing values."""

    def __init__(self, values: SecretValues, tokens: Mapping[str, str] | None = None) -> None:
        self._values = values
        self._tokens = tokens or {}
        self.secrets: dict[str, Any] = {}
        self.warnings: list[str] = []

    def value(self, item: Integration, ref: CredentialRef, purpose: str) -> bytes | None:
        """The resolved value of ``ref``, or None after recording a warning."""
        value = self._values.get(ref.ref)
        if value is None:
            self.warnings.append(f"{item.id}: {ref.ref} is not resolved; {purpose}")
            return None
        return _bytes(value)

    def generic(
        self, item: Integration, slot: str, purpose: str, prefix: bytes = b""
    ) -> Any | None:
        """An SDS reference to a generic secret holding ``prefix + value`` of ``slot``.

        Trailing whitespace is stripped: ``file:`` secrets usually end with a newline, which
        is not allowed in an HTTP header value.
        """
        ref = item.credentials.get(slot)
        if ref is None:
            return None
        value = self.value(item, ref, purpose)
        if value is None:
            return None
        name = f"{item.id}/{slot}"
        self.secrets[name] = secret_pb2.Secret(
            name=name,
            generic_secret=secret_pb2.GenericSecret(
                secret=base_pb2.DataSource(inline_bytes=prefix + value.rstrip())
            ),
        )
        return sds(name)

    def token(self, item: Integration) -> Any:
        """An SDS reference to the integration's token secret: ``Bearer <token>`` while the
        broker holds a valid token for *this* integration, empty otherwise."""
        name = token_secret_name(item.id)
        token = self._tokens.get(item.id)
        value = b"Bearer " + token.encode("utf-8") if token else b""
        self.secrets[name] = secret_pb2.Secret(
            name=name,
            generic_secret=secret_pb2.GenericSecret(secret=base_pb2.DataSource(inline_bytes=value)),
        )
        return sds(name)

    def client_certificate(self, item: Integration) -> Any | None:
        tls = item.upstream.tls
        if tls.client_cert is None or tls.client_key is None:
            return None
        purpose = "no client certificate is presented (mTLS)"
        cert = self.value(item, tls.client_cert, purpose)
        key = self.value(item, tls.client_key, purpose)
        if cert is None or key is None:
            return None
        name = f"{item.id}/client-cert"
        self.secrets[name] = secret_pb2.Secret(
            name=name,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=cert),
                private_key=base_pb2.DataSource(inline_bytes=key),
            ),
        )
        return sds(name)

    def ca_bundle(self, item: Integration) -> Any | None:
        ref = item.upstream.tls.ca_bundle
        if ref is None:
            return None
        value = self.value(item, ref, "the system trust store verifies the upstream instead")
        if value is None:
            return None
        name = f"{item.id}/ca"
        self.secrets[name] = secret_pb2.Secret(
            name=name,
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=value)
            ),
        )
        return sds(name)
