"""The prober's own logic with in-test probe functions: thresholds, timeouts, scrubbing,
callbacks and the per-integration loop (the probes themselves are tested e2e)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.probes import ProbeContext, probe_for
from adapters.probes.envoy_replies import sidecar_failure
from adapters.probes.result import ProbeResult
from control_plane.model import CredentialRef, Integration, TlsSettings, Upstream
from control_plane.probing.book import ProbeBook
from control_plane.probing.runner import HealthCheck, Prober, ProbeSchedule
from control_plane.problems import RegistryError
from control_plane.registry.view import RegistryView
from control_plane.settings import load_settings


def _item(ident: str = "api", *, enabled: bool = True, port: int | None = 10001) -> Integration:
    upstream = Upstream("api.example.test", 443, "https", TlsSettings())
    return Integration(
        ident,
        "redis",
        upstream,
        enabled=enabled,
        listen_port=port,
        credentials={"password": CredentialRef("env:PROBER_TEST_PASSWORD")},
    )


class Scripted:
    """A probe answering ok/failed in the scripted order (then repeating the last)."""

    def __init__(self, *outcomes: bool) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, ctx: ProbeContext) -> ProbeResult:
        self.calls += 1
        ok = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        ctx.at("ping")
        return ctx.ok("pong") if ok else ctx.fail("no pong")


def _prober(probe: object, **schedule: float | int | bool) -> Prober:
    return Prober(
        ProbeBook(),
        environ={"PROBER_TEST_PASSWORD": "hunter2-secret"},
        schedule=ProbeSchedule(**schedule),  # type: ignore[arg-type]
        probes=lambda kind: probe,  # type: ignore[arg-type,return-value]
    )


def test_schedule_from_environ(tmp_path: Path) -> None:
    # The environment is parsed once, by load_settings; the schedule copies its values.
    def schedule_of(environ: dict[str, str]) -> ProbeSchedule:
        return ProbeSchedule.from_settings(load_settings(environ, tmp_path / "none.yaml"))

    assert schedule_of({}) == ProbeSchedule()
    schedule = schedule_of(
        {
            "INTEGRATION_SERVICE_PROBE_INTERVAL": "2.5",
            "INTEGRATION_SERVICE_PROBE_UNHEALTHY_THRESHOLD": "4",
            "INTEGRATION_SERVICE_PROBE_ENABLED": "off",
        }
    )
    assert (schedule.interval_s, schedule.unhealthy_threshold, schedule.enabled) == (2.5, 4, False)
    for name, raw in (("INTERVAL", "0"), ("HEALTHY_THRESHOLD", "x"), ("ENABLED", "maybe")):
        with pytest.raises(RegistryError):
            schedule_of({f"INTEGRATION_SERVICE_PROBE_{name}": raw})


async def test_thresholds_like_envoy() -> None:
    probe = Scripted(True, False, False, False, True, True)
    prober = _prober(probe, healthy_threshold=2, unhealthy_threshold=2)
    states = [(await prober.check(_item())).state for _ in range(6)]
    assert states == ["unknown", "unknown", "unhealthy", "unhealthy", "unhealthy", "healthy"]
    assert prober.book.last("api") is not None
    assert prober.book.state_of("api") == "healthy"


async def test_timeout_names_the_step_in_progress() -> None:
    async def slow(ctx: ProbeContext) -> ProbeResult:
        ctx.at("pubsub")
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    result = await _prober(slow, timeout_s=0.05).probe(_item())
    assert (result.ok, result.step) == (False, "pubsub")
    assert result.detail == "no answer within 0.05s"


async def test_errors_are_reported_and_secrets_scrubbed() -> None:
    async def leaky(ctx: ProbeContext) -> ProbeResult:
        ctx.at("auth")
        raise RuntimeError(f"server said: bad password {ctx.credential('password')}")

    result = await _prober(leaky).probe(_item())
    assert (result.ok, result.step) == (False, "auth")
    assert "hunter2-secret" not in result.detail
    assert result.detail == "RuntimeError: server said: bad password ***"


async def test_no_probe_without_listener_or_when_disabled() -> None:
    probe = Scripted(True)
    prober = _prober(probe)
    for item in (_item(enabled=False), _item(port=None)):
        result = await prober.probe(item)
        assert (result.ok, result.step) == (False, "config")
    assert probe.calls == 0


async def test_callbacks_sync_async_and_failing() -> None:
    prober = _prober(Scripted(True))
    seen: list[HealthCheck] = []

    async def later(check: HealthCheck) -> None:
        seen.append(check)

    def broken(check: HealthCheck) -> None:
        raise ValueError("a subscriber bug must not stop the others")

    prober.callbacks += [seen.append, broken, later]
    check = await prober.check(_item(), "scheduled")
    assert [c.trigger for c in seen] == ["scheduled", "scheduled"]
    assert check.changed and (check.previous, check.state) == ("unknown", "healthy")


async def test_loop_follows_the_registry() -> None:
    probe = Scripted(True)
    prober = _prober(probe, interval_s=0.02)
    view = RegistryView(items={"api": _item("api"), "off": _item("off", enabled=False)})
    task = asyncio.create_task(prober.run(lambda: view))
    try:
        for _ in range(200):
            if probe.calls >= 3:
                break
            await asyncio.sleep(0.02)
        assert probe.calls >= 3, "probed repeatedly"
        assert prober.book.state_of("api") == "healthy"
        assert prober.book.last("off") is None, "disabled integrations are not probed"
        view = RegistryView(items={}, generation=1)
        for _ in range(100):
            if prober.book.last("api") is None:
                break
            await asyncio.sleep(0.05)
        assert prober.book.state_of("api") == "unknown", "removed integration forgotten"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("status", "body", "step"),
    [
        (401, "Failed to inject credential.", "auth"),
        (503, "upstream connect error or disconnect/reset before headers. reset reason: "
              "remote connection failure, transport failure reason: TLS_error:|268435581:"
              "SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end", "tls"),
        (503, "upstream connect error or disconnect/reset before headers. reset reason: "
              "remote connection failure", "connect"),
        (503, "no healthy upstream", "connect"),
        (504, "upstream request timeout", "request"),
        (429, "local_rate_limited", "request"),
    ],
)  # fmt: skip
def test_envoy_local_replies(status: int, body: str, step: str) -> None:
    failure = sidecar_failure(status, body)
    assert failure is not None and failure.step == step


def test_upstream_answers_are_not_envoy_replies() -> None:
    assert sidecar_failure(503, '{"error": "maintenance"}') is None
    assert sidecar_failure(401, '{"error": {"type": "invalid_request_error"}}') is None


@pytest.fixture
def kinds() -> Iterator[list[str]]:
    from adapters import ADAPTERS

    yield sorted(ADAPTERS)


def test_every_kind_has_a_probe(kinds: list[str]) -> None:
    for kind in kinds:
        assert callable(probe_for(kind))
    with pytest.raises(KeyError):
        probe_for("ftp")


class CountingAdmin:
    """Envoy's admin API as the prober uses it: failure counters, counting the reads."""

    def __init__(self) -> None:
        self.reads: list[str | None] = []
        self.counters: dict[str, float] = {}

    async def __aenter__(self) -> CountingAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def stats(
        self, pattern: str | None = None, *, used_only: bool = False, kind: str | None = None
    ) -> dict[str, float]:
        self.reads.append(pattern)
        await asyncio.sleep(0.01)
        return dict(self.counters)


class TlsFailure:
    """A probe whose connect fails while Envoy counts a SAN mismatch for its cluster."""

    def __init__(self, admin: CountingAdmin) -> None:
        self.admin = admin

    async def __call__(self, ctx: ProbeContext) -> ProbeResult:
        ctx.at("connect")
        key = f"cluster.{ctx.integration.id}.ssl.fail_verify_san"
        self.admin.counters[key] = self.admin.counters.get(key, 0) + 1
        return ctx.fail("connection reset")


def _watching(admin: CountingAdmin, probe: object) -> Prober:
    """A prober that reads Envoy's counters from ``admin``."""
    return Prober(
        ProbeBook(),
        environ={"PROBER_TEST_PASSWORD": "hunter2-secret"},
        admin=lambda: admin,  # type: ignore[arg-type,return-value]
        probes=lambda kind: probe,  # type: ignore[arg-type,return-value]
    )


async def test_probes_starting_together_share_one_narrow_counter_read() -> None:
    admin = CountingAdmin()
    prober = _watching(admin, Scripted(True))
    results = await asyncio.gather(*(prober.probe(_item(f"api-{i}")) for i in range(20)))
    assert all(r.ok for r in results)
    # One read for the twenty, asking for the failure counters only (not the whole /stats).
    assert len(admin.reads) == 1
    assert admin.reads[0] is not None and "fail_verify_san" in admin.reads[0]


async def test_a_failed_connect_reads_the_counters_afresh_to_name_the_tls_step() -> None:
    admin = CountingAdmin()
    prober = _watching(admin, TlsFailure(admin))
    result = await prober.probe(_item("billing"))
    assert result.step == "tls"
    assert "cluster.billing.ssl.fail_verify_san +1" in result.detail
    assert len(admin.reads) == 2  # the shared "before", then this probe's own "after"
