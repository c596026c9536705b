"""Shared tokens are sealed for one integration and grant; anything else does not open."""

from __future__ import annotations

import pytest

from control_plane.tokens.cipher import TokenCipher

KEY = "k" * 40


def test_sealed_for_one_binding_opens_only_with_it() -> None:
    cipher = TokenCipher(KEY)
    sealed = cipher.seal(b"token-a", "integration-a\nfp1")
    assert b"token-a" not in sealed
    assert cipher.open(sealed, "integration-a\nfp1") == b"token-a"
    assert cipher.open(sealed, "integration-b\nfp1") is None  # another integration
    assert cipher.open(sealed, "integration-a\nfp2") is None  # the grant changed since
    assert TokenCipher("x" * 40).open(sealed, "integration-a\nfp1") is None  # another key
    assert cipher.open(b"short", "integration-a\nfp1") is None


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenCipher("too-short")
