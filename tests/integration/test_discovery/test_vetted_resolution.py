"""Vetted resolution against a loopback DNS server speaking the real protocol
(``tests/support/fake_dns.py``): TTLs within the floor and the ceiling, refused addresses
dropped, the last good set kept, events, and the app serving the result over EDS.

Every address in an answer is data the resolver checks; the only sockets are the DNS
server's and the app's, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from control_plane.app.dns import RESOLUTION_REFUSED, refusal_publisher
from control_plane.discovery.dns import Refusal, VettedResolver
from control_plane.discovery.dns_lookup import DnsLookup, parse_servers, refusal
from control_plane.keys import DNS_RESOLVER, PIPELINE, XDS_CACHE
from control_plane.model import Integration
from control_plane.problems import RegistryError
from control_plane.registry.loader import integration_from_document
from control_plane.security.ssrf import Allowlist, SsrfRefused, UpstreamGuard
from control_plane.settings import load_settings
from control_plane.xds.resources import ENDPOINT
from tests.support.app import ROOT, app_settings
from tests.support.fake_dns import FakeDns, running_dns
from tests.support.waiting import wait_until

NAME = "api.vetted.test"


@dataclass
class _View:
    """What the resolver reads of a registry view."""

    items: list[Integration]
    generation: int = 1

    def enabled(self) -> list[Integration]:
        return [i for i in self.items if i.enabled]


def _item(ident: str, host: str = NAME, *, tenant: str = "acme", port: int = 8443) -> Integration:
    doc = {"id": ident, "kind": "http", "tenant": tenant, "upstream": f"https://{host}:{port}"}
    return integration_from_document(doc, source="registered")


@dataclass
class _Published:
    calls: list[dict[str, tuple[str, ...]]] = field(default_factory=list)

    def __call__(self, changes: Mapping[str, Sequence[str]], pending: int | None) -> None:
        self.calls.append({name: tuple(addresses) for name, addresses in changes.items()})


@dataclass
class _Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    with running_dns() as server:
        yield server


def _resolver(
    dns: FakeDns,
    allow: str,
    published: _Published,
    reports: list[Refusal] | None = None,
    **options: Any,
) -> VettedResolver:
    async def on_refused(report: Refusal) -> None:
        if reports is not None:
            reports.append(report)

    return VettedResolver(
        DnsLookup(parse_servers(dns.server)),
        Allowlist.parse(allow),
        published,
        on_refused=on_refused,
        **options,
    )


async def test_ttls_are_kept_within_the_floor_and_the_ceiling(dns: FakeDns) -> None:
    dns.set("short.test", ["127.0.0.2"], ttl=1)
    dns.set("mid.test", ["127.0.0.2"], ttl=60)
    dns.set("long.test", ["127.0.0.2"], ttl=86400)
    clock, published = _Clock(), _Published()
    resolver = _resolver(
        dns, "127.0.0.0/8", published, ttl_floor_s=5, ttl_ceiling_s=300, clock=clock
    )
    view = _View([_item("a", "short.test"), _item("b", "mid.test"), _item("c", "long.test")])
    await resolver.apply(view)
    due = {name: state.next_refresh - clock.now for name, state in resolver.states.items()}
    assert due == {"short.test": 5, "mid.test": 60, "long.test": 300}
    assert resolver.states["long.test"].ttl == 86400, "the answer's TTL is reported as is"
    assert published.calls == [{n: ("127.0.0.2",) for n in due}], "one publish for all"


async def test_refreshes_follow_the_clamped_ttl(dns: FakeDns) -> None:
    """In real time: TTL 0 is refreshed at the floor (no spinning), a day at the ceiling."""
    dns.set("zero.test", ["127.0.0.2"], ttl=0)
    dns.set("day.test", ["127.0.0.2"], ttl=86400)
    resolver = _resolver(
        dns, "127.0.0.0/8", _Published(), ttl_floor_s=0.2, ttl_ceiling_s=0.5, batch_window_s=0
    )
    await resolver.apply(_View([_item("a", "zero.test"), _item("b", "day.test")]))
    task = asyncio.create_task(resolver.run())
    await asyncio.sleep(1.6)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # 1 at apply, then one per floor (0.2 s) / ceiling (0.5 s), with slack for slow hosts.
    assert 5 <= dns.asked("zero.test") <= 9
    assert 2 <= dns.asked("day.test") <= 4


async def test_refused_addresses_are_dropped_logged_and_reported(
    dns: FakeDns, caplog: pytest.LogCaptureFixture
) -> None:
    dns.set(NAME, ["127.0.0.2", "127.0.0.3", "169.254.169.254"])
    published, reports = _Published(), list[Refusal]()
    resolver = _resolver(dns, "127.0.0.2/32", published, reports)
    with caplog.at_level(logging.WARNING, logger="control_plane.discovery.dns"):
        await resolver.apply(_View([_item("pay"), _item("pay-eu", tenant="eu")]))
    assert published.calls == [{NAME: ("127.0.0.2",)}], "only the accepted address is served"
    state = resolver.states[NAME]
    assert state.refused == (("127.0.0.3", "loopback"), ("169.254.169.254", "metadata"))
    assert state.error is None
    (report,) = reports
    assert report.integrations == (("pay", "acme"), ("pay-eu", "eu"))
    assert not report.kept_last_good
    assert report.data("pay") == {
        "id": "pay",
        "name": NAME,
        "refused": [
            {"address": "127.0.0.3", "rule": "loopback"},
            {"address": "169.254.169.254", "rule": "metadata"},
        ],
        "addresses": ["127.0.0.2"],
        "kept_last_good": False,
    }
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    for text in (NAME, "127.0.0.3 (rule loopback)", "169.254.169.254 (rule metadata)"):
        assert text in message
    # The same answer again: no new report or warning (once per change of the refused set).
    caplog.clear()
    await resolver.refresh_all()
    assert len(reports) == 1 and not caplog.records
    dns.set(NAME, ["127.0.0.2", "10.0.0.7"])
    await resolver.refresh_all()
    assert reports[-1].refused == (("10.0.0.7", "private"),)


async def test_last_good_set_is_kept_and_an_unknown_name_gets_no_endpoints(dns: FakeDns) -> None:
    dns.set(NAME, ["127.0.0.2"])
    published, reports = _Published(), list[Refusal]()
    resolver = _resolver(dns, "127.0.0.2/32,127.0.0.4/32", published, reports)
    await resolver.apply(_View([_item("pay"), _item("ghost", "ghost.test")]))
    assert published.calls == [{NAME: ("127.0.0.2",)}], "nothing to publish for ghost.test"
    ghost = resolver.states["ghost.test"]
    assert ghost.served == () and "NXDOMAIN" in (ghost.error or "")

    # Re-pointed at an address outside the allow-list: nothing acceptable, last good kept.
    dns.set(NAME, ["127.0.0.3"])
    await resolver.refresh_all()
    state = resolver.states[NAME]
    assert state.served == ("127.0.0.2",)
    assert state.refused == (("127.0.0.3", "loopback"),)
    assert "last good" in (state.error or "")
    assert reports[-1].kept_last_good and reports[-1].served == ("127.0.0.2",)
    for failure in ("NXDOMAIN", "SERVFAIL"):
        dns.set(NAME, rcode=failure)
        await resolver.refresh_all()
        assert state.served == ("127.0.0.2",), failure
        assert state.error
    assert len(published.calls) == 1, "the pipeline was never told to drop the good address"

    dns.set(NAME, ["127.0.0.4", "127.0.0.2"])
    await resolver.refresh_all()
    assert published.calls[-1] == {NAME: ("127.0.0.2", "127.0.0.4")}
    assert state.error is None
    assert not state.refused
    described = resolver.describe(NAME)
    assert described["addresses"] == ["127.0.0.2", "127.0.0.4"]
    assert described["last_refresh"] and described["next_refresh"]


async def test_failures_back_off_from_the_floor_to_the_ceiling(dns: FakeDns) -> None:
    clock = _Clock()
    resolver = _resolver(dns, "", _Published(), ttl_floor_s=5, ttl_ceiling_s=30, clock=clock)
    await resolver.apply(_View([_item("ghost", "ghost.test")]))
    delays = [resolver.states["ghost.test"].next_refresh - clock.now]
    for _ in range(4):
        await resolver.refresh_all()
        delays.append(resolver.states["ghost.test"].next_refresh - clock.now)
    assert delays == [5, 10, 20, 30, 30]


async def test_names_leaving_the_registry_are_withdrawn(dns: FakeDns) -> None:
    dns.set(NAME, ["127.0.0.2"])
    published = _Published()
    resolver = _resolver(dns, "127.0.0.0/8", published)
    await resolver.apply(_View([_item("pay")]))
    await resolver.apply(_View([_item("pay", "api.other.test")], generation=2))
    assert published.calls[-1] == {NAME: ()}
    assert NAME not in resolver.states


async def test_addresses_are_judged_as_registration_judges_them() -> None:
    addresses = [
        "127.0.0.2",
        "127.0.0.3",
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "10.1.2.3",
        "fd00:ec2::254",
        "100.64.0.1",
        "93.184.216.34",
        "2606:2800:220:1::1",
    ]
    for allow in ("", "127.0.0.2/32", "10.0.0.0/8,::ffff:0:0/96", "*.vetted.test"):
        allowlist = Allowlist.parse(allow)
        guard = UpstreamGuard(allowlist)
        for address in addresses:
            try:
                await guard.check("https", address, 443)
                expected = None
            except SsrfRefused as exc:
                expected = exc.rule
            name_allowed = allowlist.permits_name(NAME)
            assert refusal(allowlist, NAME, address) == (None if name_allowed else expected), (
                allow,
                address,
            )


async def test_refusals_become_events_per_integration() -> None:
    emitter = AsyncMock()
    report = Refusal(NAME, (("127.0.0.3", "loopback"),), (), False, (("a", "t1"), ("b", "t2")))
    await refusal_publisher(emitter)(report)
    sent = [(c.args[0], c.args[1]["id"], c.kwargs) for c in emitter.emit.await_args_list]
    assert sent == [
        (RESOLUTION_REFUSED, "a", {"tenant": "t1", "subject": "a"}),
        (RESOLUTION_REFUSED, "b", {"tenant": "t2", "subject": "b"}),
    ]


def test_dns_servers_setting() -> None:
    assert parse_servers("") == []
    assert parse_servers("10.0.0.2, 127.0.0.1:5353,[fd00::53]:5300,::1") == [
        ("10.0.0.2", 53),
        ("127.0.0.1", 5353),
        ("fd00::53", 5300),
        ("::1", 53),
    ]
    for bad in ("dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1]x"):
        with pytest.raises(ValueError):
            parse_servers(bad)


# -- the app: registry -> resolver -> pipeline -> EDS, and the status API -----------------


@pytest.fixture
async def client(tmp_path: Path, dns: FakeDns) -> Any:
    settings = app_settings(
        tmp_path,
        auth="disabled",
        dns_servers=dns.server,
        upstream_allowlist="127.0.0.2/32",
        dns_ttl_floor=0.2,
        dns_ttl_ceiling=0.5,
    )
    app = create_app(settings, environ={})
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _assignment(client: Any, ident: str) -> list[str]:
    snapshot = client.app[XDS_CACHE].snapshot
    assert snapshot is not None
    assignment = snapshot.get(ENDPOINT)[ident]
    return [
        lb.endpoint.address.socket_address.address
        for locality in assignment.endpoints
        for lb in locality.lb_endpoints
    ]


async def test_a_registration_is_served_its_vetted_addresses(client: Any, dns: FakeDns) -> None:
    dns.set(NAME, ["127.0.0.2"], ttl=0)
    doc = {"id": "pay", "kind": "http", "upstream": f"https://{NAME}:8443"}
    created = await client.post("/integrations", json=doc)
    assert created.status == 201, await created.text()
    assert dns.asked(NAME) >= 2, "the guard and the resolver both asked the loopback server"
    # Resolved before the pipeline translated the new view: no empty first assignment.
    assert _assignment(client, "pay") == ["127.0.0.2"]
    assert not any("no vetted address" in w for w in client.app[PIPELINE].state.warnings)
    status = await (await client.get("/integrations/pay/status")).json()
    resolution = status["resolution"]
    assert resolution["mode"] == "vetted" and resolution["name"] == NAME
    assert resolution["addresses"] == ["127.0.0.2"]
    assert resolution["refused"] == [] and resolution["error"] is None
    assert resolution["last_refresh"] and resolution["next_refresh"]

    async def refreshed() -> None:
        asked = dns.asked(NAME)
        await wait_until(lambda: dns.asked(NAME) >= asked + 2, deadline_s=5, message="refresh")

    # A rebinding answer adds a refused address: dropped, the good one still served.
    dns.set(NAME, ["127.0.0.2", "127.0.0.3"], ttl=0)
    await refreshed()
    status = await (await client.get("/integrations/pay/status")).json()
    assert status["resolution"]["refused"] == [{"address": "127.0.0.3", "rule": "loopback"}]
    assert _assignment(client, "pay") == ["127.0.0.2"]
    # Only the refused address: the last good set stays.
    dns.set(NAME, ["127.0.0.3"], ttl=0)
    await refreshed()
    assert _assignment(client, "pay") == ["127.0.0.2"]
    status = await (await client.get("/integrations/pay/status")).json()
    assert "last good" in status["resolution"]["error"]

    # A declared integration keeps Envoy's resolution and says so.
    declared = await (await client.get("/integrations")).json()
    ident = next(i["id"] for i in declared["items"] if i["source"] == "declared")
    block = (await (await client.get(f"/integrations/{ident}/status")).json())["resolution"]
    assert block is None or block["mode"] == "envoy"
    assert client.app[DNS_RESOLVER].states.keys() == {NAME}


async def test_a_name_with_no_acceptable_address_has_no_endpoints(
    client: Any, dns: FakeDns
) -> None:
    # Not resolvable when registered: accepted with a warning, and no endpoints.
    doc = {"id": "meta", "kind": "http", "upstream": f"https://{NAME}:8443"}
    created = await client.post("/integrations", json=doc)
    assert created.status == 201, await created.text()
    assert "could not be resolved" in created.headers["X-Integration-Service-Warning"]
    assert _assignment(client, "meta") == []
    resolution = (await (await client.get("/integrations/meta/status")).json())["resolution"]
    assert resolution["addresses"] == [] and "NXDOMAIN" in resolution["error"]
    # Then pointed at the metadata address: refused, still nothing to connect to.
    dns.set(NAME, ["169.254.169.254"], ttl=0)
    await wait_until(lambda: dns.asked(NAME) >= 3, deadline_s=5, message="refreshed")
    await wait_until(
        lambda: client.app[DNS_RESOLVER].states[NAME].refused != (), deadline_s=5, message="seen"
    )
    assert _assignment(client, "meta") == []
    resolution = (await (await client.get("/integrations/meta/status")).json())["resolution"]
    assert resolution["refused"] == [{"address": "169.254.169.254", "rule": "metadata"}]
    assert "503" in resolution["error"]
    # The registration guard asks the same server: that answer is refused outright.
    again = await client.post("/integrations", json={**doc, "id": "meta2"})
    assert again.status == 422 and (await again.json())["rule"] == "metadata"
    upstream = {"url": doc["upstream"], "resolution": "envoy"}
    envoy_resolved = {**doc, "id": "meta3", "upstream": upstream}
    refused = await client.post("/integrations", json=envoy_resolved)
    assert refused.status == 422


def test_settings_from_the_environment_and_the_file(tmp_path: Path) -> None:
    environ = {
        "INTEGRATION_SERVICE_DNS_TTL_FLOOR": "2.5",
        "INTEGRATION_SERVICE_DNS_TTL_CEILING": "60",
        "INTEGRATION_SERVICE_DNS_SERVERS": "127.0.0.1:5353",
    }
    settings = load_settings(environ, tmp_path / "none.yaml")
    assert (settings.dns_ttl_floor, settings.dns_ttl_ceiling) == (2.5, 60.0)
    assert settings.dns_servers == "127.0.0.1:5353"
    file = tmp_path / "service.yaml"
    file.write_text("dns_servers: [127.0.0.1, '[::1]:53']\n")
    assert load_settings({}, file).dns_servers == "127.0.0.1,[::1]:53"
    defaults = load_settings({}, ROOT / "config" / "integration_service.yaml")
    assert (defaults.dns_ttl_floor, defaults.dns_ttl_ceiling, defaults.dns_servers) == (5, 300, "")
    with pytest.raises(RegistryError):
        load_settings({"INTEGRATION_SERVICE_DNS_TTL_FLOOR": "0"}, tmp_path / "none.yaml")


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"dns_ttl_floor": 30.0, "dns_ttl_ceiling": 10.0}, "/dns_ttl_floor"),
        ({"dns_servers": "dns.example"}, "/dns_servers"),
    ],
)
def test_invalid_dns_settings_refuse_to_start(
    tmp_path: Path, overrides: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        create_app(app_settings(tmp_path, auth="disabled", **overrides), environ={})
    assert [p.pointer for p in caught.value.problems] == [pointer]
