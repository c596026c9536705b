"""Probes through real Envoy: every kind's client library talks to its sidecar port and
the credentials arrive from Envoy, never from the app.

One stack (fakes, Envoy, control plane) serves the SaaS-style kinds; PostgreSQL and Redis
get their own small stacks so their markers stay honest. Broken integrations sit beside
the working ones (stopped upstream, wrong credentials, bad TLS), each named for its case.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import trustme

from tests.support.fake_auth0 import FakeAuth0, running_fake_auth0
from tests.support.fake_s3 import FakeS3, running_fake_s3
from tests.support.fake_smtp import SmtpRecorder, running_smtp
from tests.support.fake_stripe import FakeStripe, running_fake_stripe
from tests.support.ports import free_port
from tests.support.probe_stack import ProbeStack, probe_stack
from tests.support.tls_upstream import TlsUpstream, running_tls_upstream
from tests.support.upstream import Upstream, running_upstream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.asyncio(loop_scope="module")]

STRIPE_KEY = "sk_test_probe_e2e_9fQx2"
AUTH0_ID = "m2m-client-e2e"
AUTH0_SECRET = "auth0-secret-e2e-7Kp"
EMAIL_KEY = "email-key-e2e-4Rt"
AWS_ID, AWS_SECRET = "AKIDPROBEE2E", "aws-secret-e2e-Zw9"
SECRETS = (STRIPE_KEY, AUTH0_SECRET, EMAIL_KEY, AWS_SECRET)


@dataclass
class Saas:
    stack: ProbeStack
    stripe: FakeStripe
    auth0: FakeAuth0
    s3: FakeS3
    email_api: Upstream
    smtp: SmtpRecorder
    smtp_tls: SmtpRecorder
    mtls: TlsUpstream


def _aws_file(path: Path, secret: str) -> str:
    path.write_text(f"[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {secret}\n")
    return f"file:{path}"


def _registry(d: dict[str, Any]) -> str:
    """The integrations file: one entry per scenario (JSON is valid YAML)."""
    p = d["ports"]

    def item(ident: str, kind: str, upstream: Any, **extra: Any) -> dict[str, Any]:
        return {"id": ident, "kind": kind, "upstream": upstream, "listen_port": p[ident], **extra}

    stripe = {"api_key": "env:E2E_STRIPE_KEY"}
    auth0 = {"client_id": "env:E2E_AUTH0_ID", "client_secret": "env:E2E_AUTH0_SECRET"}
    audience = {"audience": "https://api.example.test/"}
    smtp_tls = {"url": d["smtp_tls"], "tls": {"enabled": False, "ca_bundle": d["ca"]}}
    items = [
        item("stripe", "stripe", d["stripe"], credentials=stripe),
        item("stripe-badkey", "stripe", d["stripe"], credentials={"api_key": "env:E2E_BAD"}),
        item("stripe-down", "stripe", d["down"], credentials=stripe),
        item("auth0", "auth0", d["auth0"], credentials=auth0, settings=audience),
        item(
            "auth0-badsecret",
            "auth0",
            d["auth0"],
            credentials={**auth0, "client_secret": "env:E2E_BAD"},
            settings=audience,
        ),
        item("smtp", "email", d["smtp"]),
        item("smtp-starttls", "email", smtp_tls),
        item(
            "smtp-wrongname",
            "email",
            {"url": d["smtp_wrongname"], "tls": {"enabled": False, "ca_bundle": d["ca"]}},
        ),
        item("smtp-down", "email", d["down_tcp"]),
        item(
            "email-api",
            "email",
            d["email_api"],
            credentials={"api_key": "env:E2E_EMAIL_KEY"},
            settings={
                "transport": "http",
                "api_key_header": "X-Api-Key",
                "api_key_prefix": "",
                "probe_path": "/v3/user/profile",
            },
        ),
        item(
            "s3",
            "storage",
            d["s3"],
            credentials={"secret_access_key": d["aws_good"]},
            settings={"bucket": "probe-bucket"},
        ),
        item(
            "s3-badkey",
            "storage",
            d["s3"],
            credentials={"secret_access_key": d["aws_bad"]},
            settings={"bucket": "probe-bucket"},
        ),
        item(
            "s3-nobucket",
            "storage",
            d["s3"],
            credentials={"secret_access_key": d["aws_good"]},
            settings={"bucket": "missing-bucket"},
        ),
        item("api", "http", d["plain"], settings={"probe_path": "/status"}),
        item("api-expect", "http", d["plain"], settings={"expected_status": 204}),
        item("api-down", "http", d["down"]),
        item("api-tls", "http", {"url": d["tls_ok"], "tls": {"ca_bundle": d["ca"]}}),
        item("api-wrongname", "http", {"url": d["tls_wrong"], "tls": {"ca_bundle": d["ca"]}}),
        item("api-untrusted", "http", d["tls_ok"]),  # system trust store: the test CA is unknown
        item(
            "api-mtls",
            "http",
            {
                "url": d["mtls"],
                "tls": {
                    "ca_bundle": d["ca"],
                    "client_cert": d["client_cert"],
                    "client_key": d["client_key"],
                },
            },
        ),
        item("api-mtls-nocert", "http", {"url": d["mtls"], "tls": {"ca_bundle": d["ca"]}}),
    ]
    return json.dumps({"integrations": items}, indent=1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def saas(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Saas]:
    root = tmp_path_factory.mktemp("probes")
    ca = trustme.CA()
    (root / "ca.pem").write_bytes(ca.cert_pem.bytes())
    client = ca.issue_cert("client.probe.test")
    (root / "client.pem").write_bytes(client.cert_chain_pems[0].bytes())
    (root / "client.key").write_bytes(client.private_key_pem.bytes())
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    wrong_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("wrong.probe.test").configure_cert(wrong_tls)
    async with AsyncExitStack() as stack:
        stripe = await stack.enter_async_context(running_fake_stripe(STRIPE_KEY))
        auth0 = await stack.enter_async_context(running_fake_auth0(AUTH0_ID, AUTH0_SECRET))
        s3 = await stack.enter_async_context(running_fake_s3(AWS_ID, AWS_SECRET, {"probe-bucket"}))
        plain = await stack.enter_async_context(running_upstream())
        email_api = await stack.enter_async_context(running_upstream())
        tls_ok = await stack.enter_async_context(running_tls_upstream(ca, "127.0.0.1"))
        tls_wrong = await stack.enter_async_context(running_tls_upstream(ca, "wrong.probe.test"))
        mtls = await stack.enter_async_context(
            running_tls_upstream(ca, "127.0.0.1", require_client_cert=True)
        )
        smtp = stack.enter_context(running_smtp())
        smtp_tls = stack.enter_context(running_smtp(server_tls))
        smtp_wrong = stack.enter_context(running_smtp(wrong_tls))
        names = [
            "stripe", "stripe-badkey", "stripe-down", "auth0", "auth0-badsecret", "smtp",
            "smtp-starttls", "smtp-wrongname", "smtp-down", "email-api", "s3", "s3-badkey",
            "s3-nobucket", "api", "api-expect", "api-down", "api-tls", "api-wrongname",
            "api-untrusted", "api-mtls", "api-mtls-nocert",
        ]  # fmt: skip
        down = free_port()  # nothing listens here: a stopped upstream
        registry = _registry(
            {
                "ports": {name: free_port() for name in names},
                "stripe": stripe.url,
                "auth0": auth0.url,
                "s3": s3.url,
                "plain": plain.url,
                "email_api": email_api.url,
                "down": f"http://127.0.0.1:{down}",
                "down_tcp": f"tcp://127.0.0.1:{down}",
                "tls_ok": tls_ok.url,
                "tls_wrong": tls_wrong.url,
                "mtls": mtls.url,
                "smtp": f"tcp://127.0.0.1:{smtp.port}",
                "smtp_tls": f"tcp://127.0.0.1:{smtp_tls.port}",
                "smtp_wrongname": f"tcp://127.0.0.1:{smtp_wrong.port}",
                "ca": f"file:{root / 'ca.pem'}",
                "client_cert": f"file:{root / 'client.pem'}",
                "client_key": f"file:{root / 'client.key'}",
                "aws_good": _aws_file(root / "aws-good.ini", AWS_SECRET),
                "aws_bad": _aws_file(root / "aws-bad.ini", "not-the-secret"),
            }
        )
        env = {
            "E2E_STRIPE_KEY": STRIPE_KEY,
            "E2E_AUTH0_ID": AUTH0_ID,
            "E2E_AUTH0_SECRET": AUTH0_SECRET,
            "E2E_EMAIL_KEY": EMAIL_KEY,
            "E2E_BAD": "wrong-credential-value",
        }
        probes = await stack.enter_async_context(probe_stack(root, registry, env))
        yield Saas(probes, stripe, auth0, s3, email_api, smtp, smtp_tls, mtls)


def _failed_at(result: dict[str, Any], step: str) -> None:
    assert result["ok"] is False, result
    assert result["step"] == step, result
    for secret in SECRETS:
        assert secret not in json.dumps(result)


# -- stripe ------------------------------------------------------------------------------------


async def test_stripe_balance_with_key_injected_by_envoy(saas: Saas) -> None:
    result = await saas.stack.test("stripe")
    assert result["ok"] is True, result
    assert "GET /v1/balance -> 200" in result["detail"]
    assert result["latency_ms"] > 0 and result["at"]
    seen = {k.lower(): v for k, v in saas.stripe.requests[-1].items()}
    assert seen["authorization"] == f"Bearer {STRIPE_KEY}", "the app sent none; Envoy did"
    assert seen["user-agent"].startswith("Stripe/v1 PythonBindings"), "sent by the stripe SDK"


async def test_stripe_wrong_key_is_an_auth_failure(saas: Saas) -> None:
    result = await saas.stack.test("stripe-badkey")
    _failed_at(result, "auth")
    assert "Invalid API Key provided" in result["detail"]
    assert "invalid_request_error" in result["detail"]


async def test_stripe_stopped_upstream_fails_at_connect(saas: Saas) -> None:
    _failed_at(await saas.stack.test("stripe-down"), "connect")


# -- auth0 -------------------------------------------------------------------------------------


async def test_auth0_discovery_jwks_and_token_from_envoy(saas: Saas) -> None:
    async def passes() -> bool:
        return bool((await saas.stack.test("auth0"))["ok"])

    # The broker fetches the first token asynchronously after the integration appears.
    await wait_until(passes, deadline_s=15, interval_s=0.5, message="auth0 probe passes")
    result = await saas.stack.test("auth0")
    assert "JWKS 1 key(s) [fake-auth0-key-1]" in result["detail"]
    assert "M2M token minted by the control plane" in result["detail"]
    good = [r for r in saas.auth0.token_requests if r.get("client_secret") == AUTH0_SECRET]
    assert good and good[0]["client_id"] == AUTH0_ID
    assert good[0]["grant_type"] == "client_credentials"
    assert good[0]["audience"] == "https://api.example.test/"
    # Discovery and JWKS arrived with the token the broker obtained; the probe sent none.
    assert saas.auth0.seen_authorization[-1] in {f"Bearer {t}" for t in saas.auth0.issued}


async def test_auth0_wrong_client_secret_fails_at_token(saas: Saas) -> None:
    def refused() -> bool:
        return any(
            r.get("client_secret") == "wrong-credential-value" for r in saas.auth0.token_requests
        )

    await wait_until(refused, deadline_s=10, message="the broker tried the wrong secret")
    result = await saas.stack.test("auth0-badsecret")
    _failed_at(result, "token")
    assert "401" in result["detail"]


# -- email -------------------------------------------------------------------------------------


async def test_smtp_ehlo_noop_without_starttls(saas: Saas) -> None:
    result = await saas.stack.test("smtp")
    assert result["ok"] is True, result
    assert "EHLO" in result["detail"] and "NOOP 250" in result["detail"]
    assert "STARTTLS" not in result["detail"]
    assert saas.smtp.noops[-1] is False


async def test_smtp_starttls_when_offered(saas: Saas) -> None:
    result = await saas.stack.test("smtp-starttls")
    assert result["ok"] is True, result
    assert "STARTTLS" in result["detail"]
    assert saas.smtp_tls.noops[-1] is True, "NOOP ran inside the TLS session"


async def test_smtp_starttls_wrong_certificate_name(saas: Saas) -> None:
    result = await saas.stack.test("smtp-wrongname")
    _failed_at(result, "starttls")


async def test_smtp_stopped_upstream_fails_at_connect(saas: Saas) -> None:
    _failed_at(await saas.stack.test("smtp-down"), "connect")


async def test_email_http_api_key_injected(saas: Saas) -> None:
    result = await saas.stack.test("email-api")
    assert result["ok"] is True, result
    seen = saas.email_api.requests[-1]
    assert seen["path"] == "/v3/user/profile"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-api-key"] == EMAIL_KEY, "the app sent none; Envoy did"


# -- storage -----------------------------------------------------------------------------------


async def test_s3_head_bucket_signed_by_envoy(saas: Saas) -> None:
    result = await saas.stack.test("s3")
    assert result["ok"] is True, result
    assert result["detail"] == "HeadBucket probe-bucket -> 200 (region us-east-1)"
    assert saas.s3.verdicts[-1] == "ok"
    assert saas.s3.requests[-1]["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AWS_ID}/"
    )


async def test_s3_wrong_secret_fails_at_auth(saas: Saas) -> None:
    _failed_at(await saas.stack.test("s3-badkey"), "auth")
    assert saas.s3.verdicts[-1] == "SignatureDoesNotMatch"


async def test_s3_missing_bucket_fails_at_head_bucket(saas: Saas) -> None:
    result = await saas.stack.test("s3-nobucket")
    _failed_at(result, "head_bucket")
    assert "404" in result["detail"]


# -- generic http and TLS ----------------------------------------------------------------------


async def test_http_probe_path_and_expected_status(saas: Saas) -> None:
    ok = await saas.stack.test("api")
    assert ok["ok"] is True and ok["detail"] == "GET /status -> 200", ok
    expect = await saas.stack.test("api-expect")
    _failed_at(expect, "request")
    assert "expected 204" in expect["detail"]


async def test_http_stopped_upstream_fails_at_connect(saas: Saas) -> None:
    _failed_at(await saas.stack.test("api-down"), "connect")


async def test_tls_origination_with_private_ca(saas: Saas) -> None:
    result = await saas.stack.test("api-tls")
    assert result["ok"] is True, result


async def test_tls_certificate_for_wrong_name_is_refused(saas: Saas) -> None:
    result = await saas.stack.test("api-wrongname")
    _failed_at(result, "tls")
    # Named from Envoy's counters: the 503 body only says "remote connection failure".
    assert "SAN mismatch" in result["detail"]
    assert "ssl.fail_verify_san" in result["detail"]


async def test_tls_unknown_ca_is_refused(saas: Saas) -> None:
    _failed_at(await saas.stack.test("api-untrusted"), "tls")


async def test_mtls_client_certificate_by_file_reference(saas: Saas) -> None:
    result = await saas.stack.test("api-mtls")
    assert result["ok"] is True, result
    subject = saas.mtls.client_subjects[-1]
    assert subject is not None and "client.probe.test" in str(subject), subject


async def test_mtls_without_client_certificate_fails(saas: Saas) -> None:
    result = await saas.stack.test("api-mtls-nocert")
    assert result["ok"] is False, result
    assert result["step"] in ("tls", "connect", "request"), result
