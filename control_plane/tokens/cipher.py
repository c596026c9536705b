"""Encryption of shared tokens at rest (Redis): AES-256-GCM, bound to their integration.

The key is derived (HKDF-SHA256) from the value of the ``token_encryption_key`` secret
reference, so any long random string will do (``openssl rand -base64 32``). The associated
data is the integration id and the grant's fingerprint: a record copied under another
integration's key, or left from a grant since changed, fails to open and is ignored -- a
token minted for integration A can only ever be served as A's.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["MIN_KEY_LENGTH", "TokenCipher"]

MIN_KEY_LENGTH = 32
_INFO = b"integration-service shared token v1"
_NONCE = 12


class TokenCipher:
    def __init__(self, secret: str) -> None:
        if len(secret.strip()) < MIN_KEY_LENGTH:
            raise ValueError(f"the token encryption key needs at least {MIN_KEY_LENGTH} characters")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            secret.strip().encode("utf-8")
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, binding: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, binding.encode("utf-8"))

    def open(self, sealed: bytes, binding: str) -> bytes | None:
        """The plaintext, or None when ``sealed`` was not sealed for ``binding`` by this key."""
        if len(sealed) <= _NONCE:
            return None
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], binding.encode("utf-8"))
        except InvalidTag:
            return None
