"""Token mode: which integrations mint tokens, what their documents must hold, and where
the grant's credentials may go (the token endpoint *and* the upstream the token reaches)."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.registry.credential_policy import CredentialPolicy, Grant
from control_plane.registry.loader import integration_from_document, validate_integration_document
from control_plane.registry.token_mode import token_grant, token_secret_name

CREDS = {"client_id": "env:BILLING_ID", "client_secret": "env:BILLING_SECRET"}


def _doc(**settings: Any) -> dict[str, Any]:
    return {
        "id": "billing",
        "kind": "http",
        "tenant": "acme",
        "upstream": "https://api.billing.example.com",
        "credentials": dict(CREDS),
        "settings": {
            "token": {"token_url": "https://auth.billing.example.com/oauth/token", **settings}
        },
    }


def _auth0(**settings: Any) -> dict[str, Any]:
    return {
        "id": "auth0",
        "kind": "auth0",
        "upstream": "https://acme.eu.auth0.com",
        "credentials": dict(CREDS),
        "settings": settings,
    }


def test_http_with_a_token_block_is_in_token_mode() -> None:
    item = integration_from_document(
        _doc(scopes=["a", "b"], audience="x", params={"resource": "r"}), source="registered"
    )
    grant = token_grant(item)
    assert grant is not None
    assert grant.auth_method == "client_secret_basic"  # RFC 6749's default
    assert (grant.token_host, grant.token_port, grant.token_scheme) == (
        "auth.billing.example.com",
        443,
        "https",
    )
    assert grant.scopes == ("a", "b") and grant.audience == "x"
    assert token_secret_name(item.id) == "token/billing"


def test_auth0_mints_at_its_tenant_with_client_secret_post() -> None:
    item = integration_from_document(_auth0(audience="https://api/"), source="declared")
    grant = token_grant(item)
    assert grant is not None
    assert grant.token_url == "https://acme.eu.auth0.com/oauth/token"
    assert grant.auth_method == "client_secret_post" and grant.audience == "https://api/"
    without = integration_from_document({**_auth0(), "credentials": {}}, source="declared")
    assert token_grant(without) is None  # discovery and JWKS only


def test_auth0_requires_an_audience() -> None:
    problems = validate_integration_document(_auth0())
    assert [p.pointer for p in problems] == ["/settings/audience"]
    assert validate_integration_document(_auth0(audience="https://api/")) == []


@pytest.mark.parametrize(
    ("doc", "pointer"),
    [
        ({**_doc(), "credentials": {"client_id": "env:A"}}, "/credentials/client_secret"),
        (_doc(auth_method="private_key_jwt"), "/credentials/client_assertion_key"),
        ({**_doc(), "credentials": {**CREDS, "api_key": "env:K"}}, "/credentials/api_key"),
        (_doc(params={"client_secret": "x"}), "/settings/token/params/client_secret"),
    ],
)
def test_incomplete_or_conflicting_token_modes_are_refused(
    doc: dict[str, Any], pointer: str
) -> None:
    assert pointer in [p.pointer for p in validate_integration_document(doc)]


def test_the_token_url_must_be_http_or_https() -> None:
    bad = _doc()
    bad["settings"]["token"]["token_url"] = "file:///etc/passwd"
    assert any("token_url" in p.pointer for p in validate_integration_document(bad))


def test_the_grants_credentials_must_be_bound_to_both_hosts() -> None:
    """The client secret goes to the token endpoint and the token minted with it to the
    upstream: a grant naming only the token host would let anyone mint tokens for a host
    of their choice; one naming only the upstream would send the secret elsewhere."""
    item = integration_from_document(_doc(), source="registered")

    def policy(*hosts: str) -> CredentialPolicy:
        grants = {ref: Grant(ref, frozenset({"acme"}), hosts) for ref in CREDS.values()}
        return CredentialPolicy(grants=grants)

    both = policy("auth.billing.example.com", "api.billing.example.com")
    assert both.problems(item) == []
    token_only = policy("auth.billing.example.com").problems(item)
    assert {p.rule for p in token_only} == {"destination"}
    assert all("the upstream host" in p.message for p in token_only)
    upstream_only = policy("api.billing.example.com").problems(item)
    assert {p.rule for p in upstream_only} == {"destination"}
    assert all("token endpoint" in p.message for p in upstream_only)
    wildcard = policy("*.billing.example.com")
    assert wildcard.problems(item) == []
