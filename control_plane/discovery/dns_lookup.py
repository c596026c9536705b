"""DNS lookups for vetted resolution: the servers to ask, one lookup with its TTL (dnspython's
asyncio resolver, no cache), and the SSRF verdict on one answered address. The resolver that
schedules them and serves the results is ``control_plane.discovery.dns``."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from control_plane.security.ssrf import Allowlist, classify, parse_ip_literal

if TYPE_CHECKING:  # dnspython loads with the first lookup, not with the wiring (issue 20)
    import dns.asyncresolver

__all__ = [
    "LIFETIME_S",
    "DnsAnswer",
    "DnsFailure",
    "DnsLookup",
    "ip_key",
    "parse_servers",
    "refusal",
]

# One lookup's time limit, all servers and retries included (the SSRF guard's, too).
LIFETIME_S = 2.0


def parse_servers(text: str) -> list[tuple[str, int]]:
    """``dns_servers``: comma-separated addresses, each with an optional port
    (``10.0.0.2``, ``10.0.0.2:5353``, ``[fd00::53]:5353``). Raises ValueError."""
    servers: list[tuple[str, int]] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        host, port = raw, "53"
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{raw!r}: expected [address]:port")
                port = rest[1:]
        elif raw.count(":") == 1:
            host, _, port = raw.partition(":")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{raw!r}: a DNS server is named by its address") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{raw!r}: invalid port")
        servers.append((host, int(port)))
    return servers


def refusal(allowlist: Allowlist, name: str, address: str) -> str | None:
    """The SSRF rule that refuses ``address`` as an address of ``name``, or None.

    The decision registration makes (``UpstreamGuard.check``): a name the allow-list names
    passes with any address; otherwise an address passes when no rule classifies it or the
    allow-list names it (a CIDR), in every spelling (mapped, 6to4, NAT64 embeddings).
    """
    if allowlist.permits_name(name):
        return None
    ip = parse_ip_literal(address)
    if ip is None:
        return "host"  # not an address at all: nothing a resolver should have answered
    rule = classify(ip)
    if rule is None or allowlist.permits_ip(ip):
        return None
    return rule


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    addresses: tuple[str, ...]
    ttl: float


class DnsFailure(Exception):
    """No address: NXDOMAIN, no A/AAAA record, every server failing, or the time limit."""


class DnsLookup:
    """dnspython's asyncio stub resolver, without a cache: A records, else AAAA (what the
    Envoy clusters did with ``V4_PREFERRED``); the TTL is the smallest of the chain
    (CNAMEs included). ``servers`` empty: the system's (``/etc/resolv.conf``, with its
    search domains and ``ndots``)."""

    def __init__(
        self, servers: Sequence[tuple[str, int]] = (), *, lifetime_s: float = LIFETIME_S
    ) -> None:
        self.servers = tuple(servers)
        self.lifetime_s = lifetime_s
        self._resolver: dns.asyncresolver.Resolver | None = None

    def _get(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            import dns.asyncresolver
            import dns.nameserver

            if self.servers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(host, port) for host, port in self.servers
                ]
            else:
                resolver = dns.asyncresolver.Resolver()  # raises when resolv.conf is unusable
            resolver.cache = None
            resolver.lifetime = self.lifetime_s
            resolver.timeout = self.lifetime_s / 2  # one retry of a lost datagram
            self._resolver = resolver
        return self._resolver

    async def __call__(self, name: str) -> DnsAnswer:
        import dns.exception
        import dns.resolver

        try:
            resolver = self._get()
            try:
                answer = await resolver.resolve(name, "A", search=True)
            except dns.resolver.NoAnswer:
                answer = await resolver.resolve(name, "AAAA", search=True)
        except dns.resolver.NXDOMAIN:
            raise DnsFailure(f"{name} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            raise DnsFailure(f"{name} has no A or AAAA record") from None
        except dns.exception.Timeout:
            raise DnsFailure(f"no answer for {name} within {self.lifetime_s:g}s") from None
        except dns.resolver.NoNameservers:
            raise DnsFailure(f"every DNS server failed for {name} (SERVFAIL or refused)") from None
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"{type(exc).__name__}: {exc}") from None
        addresses = tuple(str(record.address) for record in answer)
        return DnsAnswer(addresses, float(answer.chaining_result.minimum_ttl))


def ip_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)
