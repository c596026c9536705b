"""The SSRF guard: every refused spelling answers 422 naming its rule and stores nothing;
the operator allow-list lets chosen addresses and names through."""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest

from control_plane.keys import STORE
from control_plane.security.ssrf import Allowlist, SsrfRefused, UpstreamGuard, parse_ip_literal
from tests.integration.test_security.conftest import ADMIN, MakeSecure, Secure, weather_doc
from tests.support.app import grants_for

REFUSED: dict[str, tuple[str, str]] = {
    # upstream -> (rule, a readable id)
    "http://127.0.0.1:8080": ("loopback", "dotted"),
    "http://2130706433/": ("loopback", "decimal"),
    "http://0177.0.0.1/": ("loopback", "octal"),
    "http://0x7f.0.0.1/": ("loopback", "hex"),
    "http://0x7f000001/": ("loopback", "hex-whole"),
    "http://127.1/": ("loopback", "short"),
    "http://[::1]:80/": ("loopback", "ipv6"),
    "http://[::ffff:127.0.0.1]/": ("loopback", "ipv4-mapped"),
    "http://[::ffff:7f00:1]/": ("loopback", "ipv4-mapped-hex"),
    "http://localhost:8080/": ("loopback", "localhost"),
    "http://api.localhost/": ("loopback", "dot-localhost"),
    "http://0.0.0.0/": ("unspecified", "zero"),
    "http://[::]/": ("unspecified", "ipv6-zero"),
    "http://10.1.2.3/": ("private", "ten"),
    "http://172.16.0.1/": ("private", "172-16"),
    "http://192.168.1.1/": ("private", "192-168"),
    "http://012.0.0.1/": ("private", "octal-ten"),
    "http://[fd00::1]/": ("private", "ula"),
    "http://100.64.0.1/": ("cgnat", "cgnat"),
    "http://169.254.169.254/latest/meta-data/": ("metadata", "aws"),
    "http://2852039166/": ("metadata", "aws-decimal"),
    "http://[::ffff:169.254.169.254]/": ("metadata", "aws-mapped"),
    "http://[fd00:ec2::254]/": ("metadata", "aws-ipv6"),
    "http://metadata.google.internal/": ("metadata", "gcp-name"),
    "http://169.254.1.1/": ("link-local", "link-local"),
    "http://[fe80::1]/": ("link-local", "ipv6-link-local"),
    "http://224.0.0.1/": ("multicast", "multicast"),
    "http://[ff02::1]/": ("multicast", "ipv6-multicast"),
    "http://[2002:7f00:1::]/": ("loopback", "6to4"),
    "http://[64:ff9b::a9fe:a9fe]/": ("metadata", "nat64"),
    "ftp://files.example.com/": ("scheme", "ftp"),
    "gopher://files.example.com/": ("scheme", "gopher"),
}


async def _victim_events(s: Secure) -> list[str]:
    events = await s.client.app[STORE].pending_events(limit=10_000)
    return [e.type for e in events if "victim" in json.dumps(e.envelope)]


@pytest.mark.parametrize("upstream", sorted(REFUSED), ids=lambda u: REFUSED[u][1])
async def test_refused_forms(make_secure: MakeSecure, upstream: str) -> None:
    s = await make_secure()
    rule = REFUSED[upstream][0]
    response = await s.client.post(
        "/integrations", json=weather_doc("victim", upstream=upstream), headers=ADMIN
    )
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["rule"] == rule, body
    assert rule in body["detail"]
    assert (await s.client.get("/integrations/victim", headers=ADMIN)).status == 404
    assert await s.client.app[STORE].get("victim") is None, "nothing stored"
    assert await _victim_events(s) == [], "no event"


async def test_update_is_guarded_too(secure: Secure) -> None:
    response = await secure.client.put(
        "/integrations/weather", json=weather_doc(upstream="http://10.0.0.1/"), headers=ADMIN
    )
    assert response.status == 422
    assert (await response.json())["rule"] == "private"
    current = await (await secure.client.get("/integrations/weather", headers=ADMIN)).json()
    assert current["upstream"]["host"] == "api.weather.example.com", "unchanged"


async def test_a_name_that_resolves_to_loopback_is_refused(make_secure: MakeSecure) -> None:
    name = socket.gethostname()
    addresses = {i[4][0] for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    if not any(ipaddress.ip_address(a).is_loopback for a in addresses):
        pytest.skip(f"{name} does not resolve to loopback here ({addresses})")
    s = await make_secure()
    response = await s.client.post(
        "/integrations", json=weather_doc("victim", upstream=f"http://{name}:8080/"), headers=ADMIN
    )
    assert response.status == 422
    body = await response.json()
    assert body["rule"] == "loopback"
    assert "resolves to" in body["detail"]


async def test_allow_list_permits_cidrs_and_names(make_secure: MakeSecure) -> None:
    hosts = ["127.0.0.1", "127.1", "::ffff:127.0.0.1", "10.20.1.1", "10.21.0.1"]
    hosts += ["billing.corp.test", socket.gethostname()]
    s = await make_secure(
        upstream_allowlist=f"127.0.0.0/8, 10.20.0.0/16, *.corp.test,{socket.gethostname()}",
        # The credential may go to each of these hosts; what is tested is the SSRF guard.
        grants=grants_for("env:WEATHER_KEY", hosts),
    )
    for ident, upstream in (
        ("loop", "http://127.0.0.1:9"),
        ("loop-short", "http://127.1:9"),
        ("mapped", "http://[::ffff:127.0.0.1]:9"),
        ("inner", "http://10.20.1.1:9"),
        ("corp", "https://billing.corp.test"),
        ("host", f"http://{socket.gethostname()}:9"),
    ):
        response = await s.client.post(
            "/integrations", json=weather_doc(ident, upstream=upstream), headers=ADMIN
        )
        assert response.status == 201, (upstream, await response.text())
    outside = await s.client.post(
        "/integrations", json=weather_doc("outside", upstream="http://10.21.0.1"), headers=ADMIN
    )
    assert outside.status == 422


async def test_unresolvable_name_is_accepted_with_a_warning(make_secure: MakeSecure) -> None:
    s = await make_secure(grants=grants_for("env:WEATHER_KEY", ["does-not-exist.invalid"]))
    response = await s.client.post(
        "/integrations",
        json=weather_doc("later", upstream="https://does-not-exist.invalid"),
        headers=ADMIN,
    )
    assert response.status == 201
    assert "could not be resolved" in response.headers["X-Integration-Service-Warning"]


def test_inet_aton_forms() -> None:
    cases = {
        "2130706433": "127.0.0.1",
        "0177.0.0.1": "127.0.0.1",
        "0x7f.1": "127.0.0.1",
        "127.0.1": "127.0.0.1",
        "10.1": "10.0.0.1",
        "1.2.3.4": "1.2.3.4",
        "0": "0.0.0.0",
    }
    for text, expected in cases.items():
        assert str(parse_ip_literal(text)) == expected, text
    for name in ("api.stripe.com", "1.2.3.4.5", "256.1.1.1", "0x1g.0.0.1", "08.0.0.1", "a.1"):
        assert parse_ip_literal(name) is None, name


async def test_guard_with_a_resolver_returning_private_addresses() -> None:
    async def rebinding(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]  # one public, one private: refused

    guard = UpstreamGuard(Allowlist(), resolver=rebinding)
    with pytest.raises(SsrfRefused) as info:
        await guard.check("https", "api.example.com", 443)
    assert info.value.rule == "private"

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]

    assert await UpstreamGuard(resolver=public).check("https", "example.com", 443) == []


async def test_a_token_endpoint_passes_the_same_checks_as_an_upstream(
    make_secure: MakeSecure,
) -> None:
    """Token mode: the token URL receives the client secret, so the SSRF guard judges it
    like an upstream, before anything is stored."""
    refs = {"client_id": "env:BILLING_ID", "client_secret": "env:BILLING_SECRET"}
    grants = json.dumps(
        {
            "grants": [
                {
                    "ref": ref,
                    "tenants": ["*"],
                    "hosts": ["api.weather.example.com", "169.254.169.254"],
                }
                for ref in refs.values()
            ]
        }
    )
    s = await make_secure(grants=grants)
    doc = weather_doc("minted", upstream="https://api.weather.example.com")
    doc["credentials"] = refs
    doc["settings"] = {"token": {"token_url": "http://169.254.169.254/latest/oauth/token"}}
    response = await s.client.post("/integrations", json=doc, headers=ADMIN)
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["rule"] == "metadata" and body["pointer"] == "/settings/token/token_url"
    missing = await s.client.get("/integrations/minted", headers=ADMIN)
    assert missing.status == 404
