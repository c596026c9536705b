"""SSRF guard for upstreams registered through the API.

An upstream names where Envoy will send an application's traffic and credentials, so a
registration must not be able to point Envoy at the pod's own network: loopback, private
and CGNAT ranges, link-local (incl. cloud metadata at 169.254.169.254 / fd00:ec2::254),
multicast, unspecified and reserved addresses are refused, in every spelling a resolver
accepts (``2130706433``, ``0177.0.0.1``, ``0x7f.0.0.1``, ``127.1``, ``::ffff:127.0.0.1``,
6to4/NAT64 embeddings) and also when a host *name* resolves to one of them — unless the
operator allow-list (setting ``upstream_allowlist``: CIDRs and host names, ``*.suffix``)
permits it.

A name that does not resolve now is accepted with a warning: Envoy resolves it again
itself, later and repeatedly, so this check cannot be the last word anyway (DNS
rebinding; see docs/security.md for the mitigations).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ALLOWED_SCHEMES",
    "Allowlist",
    "SsrfRefused",
    "UpstreamGuard",
    "classify",
    "parse_ip_literal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https", "tcp", "tls"})

# Order matters: the first matching rule names the refusal (metadata before link-local).
_RULES: Sequence[tuple[str, Sequence[str]]] = (
    ("unspecified", ("0.0.0.0/8", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("metadata", ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("cgnat", ("100.64.0.0/10",)),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    ("reserved", ("240.0.0.0/4", "192.0.0.0/24", "198.18.0.0/15", "100::/64", "2001:db8::/32")),
)
_NETWORKS = [(rule, [ipaddress.ip_network(n) for n in nets]) for rule, nets in _RULES]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAMES = {"localhost": "loopback", "metadata.google.internal": "metadata", "metadata": "metadata"}


class SsrfRefused(Exception):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


def _inet_aton_part(text: str) -> int:
    """One part of a BSD ``inet_aton`` address: decimal, 0x hex or 0-prefixed octal."""
    if text.lower().startswith("0x"):
        return int(text[2:] or "0", 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8)
    return int(text, 10)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a resolver would read from ``host`` without DNS, or None for a name.

    Besides the canonical forms this accepts what ``inet_aton`` (glibc, curl, browsers)
    accepts: one to four parts, each decimal, octal or hex, the last filling the rest.
    """
    text = host.strip().strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    try:
        values = [_inet_aton_part(p) for p in parts]
    except ValueError:
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << (8 * (5 - len(values))) | last
    return ipaddress.IPv4Address(number)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def classify(ip: IPAddress) -> str | None:
    """The refusal rule ``ip`` falls under, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            rule = classify(inner)
            if rule is not None:
                return rule
    for rule, networks in _NETWORKS:
        if any(ip in net for net in networks):
            return rule
    return None


@dataclass(frozen=True, slots=True)
class Allowlist:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: str | Iterable[str]) -> Allowlist:
        items = entries.split(",") if isinstance(entries, str) else list(entries)
        networks = []
        names = []
        for raw in (i.strip().lower() for i in items):
            if not raw:
                continue
            try:
                networks.append(ipaddress.ip_network(raw, strict=False))
            except ValueError:
                names.append(raw.rstrip("."))
        return cls(tuple(networks), tuple(names))

    def permits_name(self, host: str) -> bool:
        return any(host == n or (n.startswith("*.") and host.endswith(n[1:])) for n in self.names)

    def permits_ip(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_v4(ip)) is not None:
            candidates.append(inner)
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class UpstreamGuard:
    """``check`` raises :class:`SsrfRefused` or returns warnings (possibly none)."""

    def __init__(
        self,
        allowlist: Allowlist | None = None,
        *,
        resolver: Resolver = system_resolver,
        timeout_s: float = 2.0,
    ) -> None:
        self.allowlist = allowlist or Allowlist()
        self._resolve = resolver
        self._timeout = timeout_s

    async def check(self, scheme: str, host: str, port: int) -> list[str]:
        if scheme not in ALLOWED_SCHEMES:
            raise SsrfRefused(
                "scheme", f"upstream scheme {scheme!r} is not allowed (use http, https, tcp, tls)"
            )
        name = host.strip().strip("[]").rstrip(".").lower()
        if not name or any(c in name for c in "@/\\ \t?#"):
            raise SsrfRefused("host", f"upstream host {host!r} is not a host name or address")
        if self.allowlist.permits_name(name):
            return []
        literal = parse_ip_literal(name)
        if literal is not None:
            self._check_ip(literal, f"upstream host {host!r}")
            return []
        named = _NAMES.get(name) or ("loopback" if name.endswith(".localhost") else None)
        if named is not None:
            raise SsrfRefused(named, f"upstream host {host!r} is a {named} name")
        try:
            addresses = await asyncio.wait_for(self._resolve(name, port), self._timeout)
        except (OSError, TimeoutError, UnicodeError) as exc:
            reason = (
                "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            )
            return [
                f"upstream host {host!r} could not be resolved now ({reason}); it was accepted, "
                "and Envoy will resolve it itself"
            ]
        for address in addresses:
            ip = parse_ip_literal(address)
            if ip is not None:
                self._check_ip(ip, f"upstream host {host!r} resolves to {address}, which")
        return []

    def _check_ip(self, ip: IPAddress, subject: str) -> None:
        rule = classify(ip)
        if rule is None or self.allowlist.permits_ip(ip):
            return
        raise SsrfRefused(
            rule,
            f"{subject} is a {rule} address ({ip}); refused by rule {rule!r} — add it to "
            "the upstream_allowlist setting if this is intended",
        )
