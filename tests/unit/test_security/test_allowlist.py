"""The SSRF guard's pure rules: the operator allow-list, the address classes it refuses
in every spelling, and the guard's decisions with a stub resolver (no DNS, no network).

The API-level view (422 naming the rule, nothing stored) is
``tests/integration/test_security/test_ssrf.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from control_plane.security.ssrf import (
    ALLOWED_SCHEMES,
    Allowlist,
    SsrfRefused,
    UpstreamGuard,
    classify,
    parse_ip_literal,
)


class StubResolver:
    """Answers every name with fixed addresses (or raises), and records the questions."""

    def __init__(self, *addresses: str, error: Exception | None = None) -> None:
        self.addresses = list(addresses)
        self.error = error
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if self.error is not None:
            raise self.error
        return self.addresses


PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# --- Allowlist.parse ---------------------------------------------------------------------


def test_parse_splits_a_comma_separated_setting() -> None:
    allow = Allowlist.parse(" 10.20.0.0/16 , *.Corp.Test, Billing.Example.COM., ,,fd00::/8")
    assert allow.networks == (_net("10.20.0.0/16"), _net("fd00::/8"))
    assert allow.names == ("*.corp.test", "billing.example.com")


def test_parse_takes_a_list_too() -> None:
    assert Allowlist.parse(["127.0.0.0/8", "api.internal"]) == Allowlist(
        (_net("127.0.0.0/8"),), ("api.internal",)
    )
    assert Allowlist.parse([]) == Allowlist.parse("") == Allowlist.parse(" , ") == Allowlist()


def test_a_single_address_is_a_network_of_one() -> None:
    allow = Allowlist.parse("10.0.0.7,::1")
    assert allow.networks == (_net("10.0.0.7/32"), _net("::1/128"))
    assert allow.names == ()


def test_host_bits_in_a_cidr_are_dropped() -> None:
    assert Allowlist.parse("10.1.2.3/8").networks == (_net("10.0.0.0/8"),)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "300.1.1.1", "10.0.0.0/8/8", "[::1]"])
def test_an_entry_that_is_no_network_is_kept_as_a_name(entry: str) -> None:
    """No error is raised: an entry that does not parse as a network becomes a host name,
    and so permits no address."""
    allow = Allowlist.parse(entry)
    assert allow.networks == ()
    assert allow.names == (entry,)
    for address in ("10.0.0.1", "::1"):
        assert not allow.permits_ip(ipaddress.ip_address(address))


async def test_a_bracketed_ipv6_entry_does_not_permit_that_address() -> None:
    guard = UpstreamGuard(Allowlist.parse("[::1]"), resolver=StubResolver())
    with pytest.raises(SsrfRefused) as info:
        await guard.check("http", "[::1]", 80)
    assert info.value.rule == "loopback"
    unbracketed = UpstreamGuard(Allowlist.parse("::1"), resolver=StubResolver())
    assert await unbracketed.check("http", "[::1]", 80) == []


# --- Allowlist.permits_name / permits_ip -------------------------------------------------


def test_names_match_exactly_and_wildcards_match_subdomains() -> None:
    allow = Allowlist.parse("api.example.com, *.corp.test")
    assert allow.permits_name("api.example.com")
    assert not allow.permits_name("www.api.example.com"), "an exact entry has no subdomains"
    assert not allow.permits_name("example.com")
    assert allow.permits_name("billing.corp.test")
    assert allow.permits_name("a.b.corp.test")
    assert not allow.permits_name("corp.test"), "*.x matches below x, not x itself"
    assert not allow.permits_name("evilcorp.test")
    assert not allow.permits_name("corp.test.evil.com")


def test_addresses_match_networks_of_their_version() -> None:
    allow = Allowlist.parse("10.20.0.0/16, fd00:1::/32")
    assert allow.permits_ip(ipaddress.ip_address("10.20.255.1"))
    assert not allow.permits_ip(ipaddress.ip_address("10.21.0.1"))
    assert allow.permits_ip(ipaddress.ip_address("fd00:1::5"))
    assert not allow.permits_ip(ipaddress.ip_address("fd00:2::5"))


@pytest.mark.parametrize("address", ["::ffff:10.20.1.1", "64:ff9b::a14:101", "2002:a14:101::"])
def test_an_ipv4_network_permits_its_addresses_inside_ipv6(address: str) -> None:
    allow = Allowlist.parse("10.20.0.0/16")
    assert allow.permits_ip(ipaddress.ip_address(address))
    assert not Allowlist.parse("10.21.0.0/16").permits_ip(ipaddress.ip_address(address))


# --- classify: which addresses are refused ------------------------------------------------

REFUSED: dict[str, str] = {
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "::": "unspecified",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "::1": "loopback",
    "169.254.169.254": "metadata",  # AWS, GCP, Azure
    "100.100.100.200": "metadata",  # Alibaba
    "fd00:ec2::254": "metadata",  # AWS over IPv6
    "169.254.0.1": "link-local",
    "169.254.169.253": "link-local",
    "fe80::1": "link-local",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.0.1": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "100.64.0.1": "cgnat",
    "100.127.255.255": "cgnat",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.0.8": "reserved",
    "198.18.0.1": "reserved",
    "100::1": "reserved",
    "2001:db8::1": "reserved",
    # IPv4 inside IPv6: mapped, its hex spelling, IPv4-compatible, 6to4, NAT64
    "::ffff:127.0.0.1": "loopback",
    "::ffff:7f00:1": "loopback",
    "::127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "metadata",
    "2002:a9fe:a9fe::": "metadata",
    "64:ff9b::169.254.169.254": "metadata",
    "::ffff:10.0.0.1": "private",
    "2002:c0a8:101::1": "private",
    "64:ff9b::10.1.2.3": "private",
    "::ffff:0.0.0.0": "unspecified",
}

PUBLIC = [
    PUBLIC_V4,
    "8.8.8.8",
    "1.1.1.1",
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "169.253.255.255",
    "223.255.255.255",  # just below multicast
    PUBLIC_V6,
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::",
]


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_refused_address_classes(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) == REFUSED[address]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("127.0.0.1.", "127.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("4294967295", "255.255.255.255"),
        ("1.16777215", "1.255.255.255"),
        ("1.2.65535", "1.2.255.255"),
        ("0X7F.1", "127.0.0.1"),
    ],
)
def test_literal_spellings(text: str, address: str) -> None:
    assert parse_ip_literal(text) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "text", ["4294967296", "1.16777216", "1.2.65536", "1..2", ".1", "", "example.com", "::g"]
)
def test_not_literals(text: str) -> None:
    assert parse_ip_literal(text) is None


# --- UpstreamGuard.check ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ftp", "file", "gopher", "ws", "HTTP", ""])
async def test_only_the_known_schemes_are_allowed(scheme: str) -> None:
    assert scheme not in ALLOWED_SCHEMES
    resolver = StubResolver(PUBLIC_V4)
    guard = UpstreamGuard(Allowlist.parse("example.com"), resolver=resolver)
    with pytest.raises(SsrfRefused) as info:
        await guard.check(scheme, "example.com", 443)
    assert info.value.rule == "scheme"
    assert resolver.asked == [], "the allow-list does not permit other schemes"


@pytest.mark.parametrize(
    "host", ["", "  ", "[]", "user@example.com", "example.com/path", "a b", "a\tb", "x?y", "x#y"]
)
async def test_hosts_that_are_no_host_are_refused(host: str) -> None:
    with pytest.raises(SsrfRefused) as info:
        await UpstreamGuard(resolver=StubResolver(PUBLIC_V4)).check("https", host, 443)
    assert info.value.rule == "host"


NO_DNS_NEEDED: dict[str, str] = {
    # literal addresses in spellings a resolver accepts
    "127.1": "loopback",
    "0x7f000001": "loopback",
    "[::ffff:7f00:1]": "loopback",
    "2852039166": "metadata",
    "012.0.0.1": "private",
    # names that are refused as such
    "localhost": "loopback",
    "LOCALHOST.": "loopback",
    "api.localhost": "loopback",
    "metadata": "metadata",
    "metadata.google.internal": "metadata",
}


@pytest.mark.parametrize("host", sorted(NO_DNS_NEEDED))
async def test_literals_and_well_known_names_are_refused_without_dns(host: str) -> None:
    resolver = StubResolver(PUBLIC_V4)
    with pytest.raises(SsrfRefused) as info:
        await UpstreamGuard(resolver=resolver).check("https", host, 443)
    assert info.value.rule == NO_DNS_NEEDED[host]
    assert repr(host) in info.value.detail
    assert resolver.asked == []


async def test_a_refused_address_is_named_with_the_way_to_permit_it() -> None:
    with pytest.raises(SsrfRefused) as info:
        await UpstreamGuard(resolver=StubResolver()).check("http", "0x7f.1", 80)
    assert "(127.0.0.1)" in info.value.detail
    assert "'loopback'" in info.value.detail
    assert "upstream_allowlist" in info.value.detail
    assert str(info.value) == info.value.detail


async def test_a_public_address_passes_without_dns() -> None:
    resolver = StubResolver("127.0.0.1")
    assert await UpstreamGuard(resolver=resolver).check("https", PUBLIC_V4, 443) == []
    assert await UpstreamGuard(resolver=resolver).check("https", f"[{PUBLIC_V6}]", 443) == []
    assert resolver.asked == []


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    public = StubResolver(PUBLIC_V4, PUBLIC_V6)
    assert await UpstreamGuard(resolver=public).check("https", "API.Example.com.", 8443) == []
    assert public.asked == [("api.example.com", 8443)], "normalised name, the port as given"
    for addresses, rule in (
        (("127.0.0.1",), "loopback"),
        ((PUBLIC_V4, "10.0.0.7"), "private"),  # one bad answer is enough
        ((PUBLIC_V6, "::ffff:169.254.169.254"), "metadata"),
        (("fe80::1%eth0",), "link-local"),
    ):
        with pytest.raises(SsrfRefused) as info:
            await UpstreamGuard(resolver=StubResolver(*addresses)).check("https", "a.test", 443)
        assert info.value.rule == rule, addresses
        assert "resolves to" in info.value.detail


@pytest.mark.parametrize("error", [OSError("no such host"), UnicodeError("label too long")])
async def test_a_name_that_does_not_resolve_is_accepted_with_a_warning(error: Exception) -> None:
    resolver = StubResolver(error=error)
    warnings = await UpstreamGuard(resolver=resolver).check("https", "later.test", 443)
    assert len(warnings) == 1
    assert "'later.test' could not be resolved now" in warnings[0]
    assert str(error) in warnings[0]


async def test_a_slow_resolver_times_out_into_a_warning() -> None:
    async def never(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    warnings = await UpstreamGuard(resolver=never, timeout_s=0.01).check("https", "slow.test", 1)
    assert len(warnings) == 1 and "timed out" in warnings[0]


async def test_the_allow_list_permits_names_without_dns_and_addresses_by_network() -> None:
    resolver = StubResolver("10.20.1.1")
    guard = UpstreamGuard(
        Allowlist.parse("10.20.0.0/16, *.corp.test, localhost"), resolver=resolver
    )
    assert await guard.check("https", "billing.corp.test", 443) == []
    assert await guard.check("http", "localhost", 80) == [], "an operator may permit a name"
    assert resolver.asked == []
    assert await guard.check("tcp", "db.internal", 5432) == [], "resolves into the network"
    assert await guard.check("tcp", "10.20.9.9", 5432) == []
    assert await guard.check("tcp", "[::ffff:10.20.9.9]", 5432) == []
    with pytest.raises(SsrfRefused) as info:
        await guard.check("tcp", "10.21.0.1", 5432)
    assert info.value.rule == "private"
    with pytest.raises(SsrfRefused):
        await guard.check("http", "127.0.0.1", 80)
