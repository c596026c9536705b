"""JWT bearer tokens against a loopback JWKS issuer with real RSA and EC keys."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from control_plane.security.jwt import JwksCache, parse_algorithms
from tests.integration.test_security.conftest import MakeSecure, Secure, bearer
from tests.support.auth import (
    AUDIENCE,
    Issuer,
    SigningKey,
    hs256_with_public_key,
    running_issuer,
    unsigned_token,
)


async def _status(s: Secure, token: str, path: str = "/integrations") -> tuple[int, str]:
    response = await s.client.get(path, headers=bearer(token))
    return response.status, await response.text()


async def test_rs256_and_es256_tokens_are_accepted(make_secure: MakeSecure) -> None:
    s = await make_secure()
    for key in s.issuer.keys:
        status, text = await _status(s, s.issuer.token(key, role="viewer"))
        assert status == 200, text


def _other_rsa() -> SigningKey:
    return SigningKey.rsa("rsa-1")  # same kid, different key: signature cannot verify


REJECTED: dict[str, tuple[Callable[[Issuer], str], str]] = {
    "alg-none": (lambda i: unsigned_token(i, "rsa-1"), "algorithm 'none' not allowed"),
    "hs256-public-key": (
        lambda i: hs256_with_public_key(i, i.keys[0]),
        "algorithm 'HS256' not allowed",
    ),
    "expired": (lambda i: i.token(lifetime=-120), "token expired"),
    "not-yet-valid": (lambda i: i.token(nbf=int(time.time()) + 600), "token not yet valid"),
    "wrong-aud": (lambda i: i.token(aud="https://someone-else"), "audience not accepted"),
    "wrong-iss": (lambda i: i.token(iss="https://evil.example/"), "issuer not accepted"),
    "unknown-kid": (lambda i: i.token(SigningKey.rsa("rsa-unknown")), "unknown key"),
    "bad-signature": (lambda i: i.token(_other_rsa()), "signature invalid"),
    "malformed": (lambda i: "eyJhbGciOi.not-json.at-all", "malformed token"),
    "garbage": (lambda i: "definitely not a token", "malformed API key"),
    "no-tenant": (lambda i: i.token(tenant=None), "no tenant claim"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
async def test_rejected_tokens(make_secure: MakeSecure, case: str) -> None:
    s = await make_secure()
    make, reason = REJECTED[case]
    token = make(s.issuer)
    response = await s.client.get("/integrations", headers=bearer(token))
    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert "invalid_token" in response.headers["WWW-Authenticate"]
    text = await response.text()
    assert reason in text, text
    assert token not in text


async def test_small_leeway_accepts_a_just_expired_token(make_secure: MakeSecure) -> None:
    s = await make_secure(jwt_leeway=30)
    assert (await _status(s, s.issuer.token(role="viewer", lifetime=-5)))[0] == 200
    assert (await _status(s, s.issuer.token(role="viewer", lifetime=-60)))[0] == 401


async def test_roles_and_tenant_from_claims(make_secure: MakeSecure) -> None:
    s = await make_secure()
    viewer = s.issuer.token(role=["viewer"], tenant="acme")
    assert (await s.client.get("/api-keys", headers=bearer(viewer))).status == 403
    operator_and_admin = s.issuer.token(role="viewer admin", tenant="acme")
    assert (await s.client.get("/api-keys", headers=bearer(operator_and_admin))).status == 200
    no_role = s.issuer.token(role=None)
    assert (await s.client.get("/integrations", headers=bearer(no_role))).status == 403
    custom = await make_secure(jwt_roles_claim="perms", jwt_tenant_claim="org")
    token = s.issuer.token(role=None, tenant=None, perms=["operator"], org="acme")
    assert (await custom.client.get("/integrations", headers=bearer(token))).status == 200


async def test_jwks_rotation_fetches_the_new_key(make_secure: MakeSecure) -> None:
    s = await make_secure()
    assert (await _status(s, s.issuer.token(role="viewer")))[0] == 200
    fetched = s.issuer.hits
    rotated = SigningKey.rsa("rsa-2")
    s.issuer.keys = [rotated]  # the issuer rotates: old key gone, new key published
    assert (await _status(s, s.issuer.token(rotated, role="viewer")))[0] == 200
    assert s.issuer.hits == fetched + 1


async def test_unknown_kid_refetch_is_rate_limited() -> None:
    async with running_issuer(SigningKey.rsa("a")) as issuer:
        cache = JwksCache(issuer.jwks_url, min_refetch_s=60)
        try:
            assert await cache.key("a") is not None
            for n in range(20):
                assert await cache.key(f"random-{n}") is None
            assert issuer.hits == 1, "a flood of unknown kids costs the issuer nothing"
        finally:
            await cache.close()


async def test_jwks_outage_keeps_known_keys() -> None:
    async with running_issuer(SigningKey.rsa("a")) as issuer:
        cache = JwksCache(issuer.jwks_url, min_refetch_s=0, max_age_s=0)
        assert await cache.key("a") is not None
    try:
        assert await cache.key("a") is not None, "issuer down: the cached key still works"
        assert cache.fetches == 2, "it did try again"
    finally:
        await cache.close()


def test_only_asymmetric_algorithms_can_be_configured() -> None:
    assert parse_algorithms("RS256, ES256") == ("RS256", "ES256")
    for bad in ("HS256", "none", "RS256,HS512", ""):
        with pytest.raises(ValueError, match="asymmetric"):
            parse_algorithms(bad)


def test_helper_tokens_really_are_what_they_claim(issuer: Issuer) -> None:
    token = issuer.token()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(
        token, issuer.keys[0].private.public_key(), algorithms=["RS256"], audience=AUDIENCE
    )
    assert claims["iss"] == issuer.url
