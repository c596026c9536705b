"""The token broker's acceptance runs, full length.  ``python -m bench.tokens``

Real Envoy, the control plane as a subprocess, and the loopback token endpoint + protected
API of ``tests/support/fake_token_endpoint.py`` (it refuses a token request without an
audience, like Auth0, and judges every API request's bearer token: ok, missing, expired or
unknown).

* **T1, provider up**: tokens of 6 s, 200 req/s for 30 s through the sidecar (half the
  requests carry the app's own placeholder ``Authorization``): requests that reached the
  upstream with an expired, missing or foreign token; token requests made.
* **T2, provider down for 20 s** (503 to every token request) with tokens of 6 s and load
  at 50 req/s: verdicts during the outage, when the last token-carrying request arrived
  against the token's expiry, and the time from the provider's return to the first
  request with a token again (against the backoff step in force).
* **T3, fleet**: 3 replicas (each control plane with its own Envoy) sharing tokens through
  one Redis (encrypted with ``token_encryption_key``), tokens of 10 s, 60 s: token requests
  the provider saw, and the verdicts of light load through every replica.

Nothing asserts a number. ``--quick`` shortens every run (for a smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.test_tokens.load import constant_load
from tests.support.fake_token_endpoint import FakeTokenEndpoint, running_token_endpoint
from tests.support.ports import free_port
from tests.support.redis import running_redis
from tests.support.replicas import running_replicas
from tests.support.stack import running_stack
from tests.support.waiting import wait_until

__all__ = ["main"]

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret-0f3e9a"
AUDIENCE = "https://bench.example.test/"
BACKOFF_MAX = 2.0
ENV = {
    "BENCH_TOKEN_ID": CLIENT_ID,
    "BENCH_TOKEN_SECRET": CLIENT_SECRET,
    "INTEGRATION_SERVICE_TOKEN_BACKOFF_BASE": "0.5",
    "INTEGRATION_SERVICE_TOKEN_BACKOFF_MAX": str(BACKOFF_MAX),
}


def _registry(fake: FakeTokenEndpoint, port: int) -> str:
    item = {
        "id": "billing",
        "kind": "http",
        "upstream": fake.url,
        "listen_port": port,
        "credentials": {
            "client_id": "env:BENCH_TOKEN_ID",
            "client_secret": "env:BENCH_TOKEN_SECRET",
        },
        "settings": {"token": {"token_url": fake.token_url, "audience": AUDIENCE}},
    }
    return json.dumps({"integrations": [item]})


async def _token_state(session: aiohttp.ClientSession, base: str) -> str | None:
    async with session.get(f"{base}/integrations/billing/status") as response:
        token = (await response.json()).get("token")
    return None if token is None else str(token["state"])


async def _wait_valid(base: str) -> None:
    async with aiohttp.ClientSession() as session:

        async def valid() -> bool:
            return await _token_state(session, base) == "valid"

        await wait_until(valid, deadline_s=30, message="token valid")


@asynccontextmanager
async def _endpoint(lifetime: float) -> AsyncIterator[FakeTokenEndpoint]:
    async with running_token_endpoint(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, expires_in=lifetime, require_audience=True
    ) as fake:
        yield fake


async def _single(tmp: Path, quick: bool) -> dict[str, Any]:
    lifetime = 6.0
    load_s, outage_s = (8.0, 8.0) if quick else (30.0, 20.0)
    async with _endpoint(lifetime) as fake:
        port = free_port()
        async with running_stack(
            tmp / "single", _registry(fake, port), env=ENV, ports={"billing": port}
        ) as stack:
            await _wait_valid(stack.service.base_url)
            url = stack.sidecar("billing", "/v1/invoices")
            fake.verdicts.clear()
            before = fake.requests_served
            statuses = await constant_load(url, rate=200, duration_s=load_s)
            t1 = {
                "rate": 200,
                "duration_s": load_s,
                "token_lifetime_s": lifetime,
                "statuses": dict(statuses),
                "verdicts": dict(fake.verdicts),
                "token_requests": fake.requests_served - before,
            }
            # T2: the provider fails every token request for outage_s seconds.
            fake.verdicts.clear()
            fake.api_requests.clear()
            fake.fail = True
            down_at = time.time()
            last_token = max(fake.issued.values())
            outage = await constant_load(url, rate=50, duration_s=outage_s)
            fake.fail = False
            up_at = time.time()
            during = dict(fake.verdicts)
            ok_times = [r["at"] for r in fake.api_requests if r["verdict"] == "ok"]
            async with aiohttp.ClientSession() as session:

                async def injected() -> bool:
                    async with session.get(url) as response:
                        return response.status == 200

                await wait_until(injected, deadline_s=30, interval_s=0.02, message="recovered")
            recovered_after = time.time() - up_at
            t2 = {
                "outage_s": outage_s,
                "token_lifetime_s": lifetime,
                "statuses": dict(outage),
                "verdicts": during,
                "last_token_expiry_after_outage_start_s": round(last_token - down_at, 3),
                "last_ok_request_after_outage_start_s": round(max(ok_times) - down_at, 3)
                if ok_times
                else None,
                "last_ok_before_expiry_s": round(last_token - max(ok_times), 3)
                if ok_times
                else None,
                "recovery_s": round(recovered_after, 3),
                "backoff_max_s": BACKOFF_MAX,
            }
    return {"t1": t1, "t2": t2}


async def _fleet(tmp: Path, quick: bool) -> dict[str, Any]:
    lifetime, window = (10.0, 20.0) if quick else (10.0, 60.0)
    async with _endpoint(lifetime) as fake:
        # One listen port for all: the three Envoys share it (Envoy listeners use
        # SO_REUSEPORT), so load through it reaches every replica's Envoy.
        port = free_port()
        with running_redis(base_dir=tmp) as redis_port:
            env = {
                **ENV,
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "INTEGRATION_SERVICE_TOKEN_ENCRYPTION_KEY": "env:BENCH_TOKEN_KEY",
                "BENCH_TOKEN_KEY": "bench-token-encryption-key-1f0c7a9e3b5d",
            }
            names = ("a", "b", "c")
            async with running_replicas(
                tmp / "fleet", env, names=names, registry_yaml=_registry(fake, port)
            ) as replicas:
                for service, _ in replicas:
                    await service.wait_ready()
                for service, _ in replicas:
                    await _wait_valid(service.base_url)
                first = min(r["at"] for r in fake.token_requests)
                fake.verdicts.clear()
                remaining = first + window - time.time()
                statuses = await constant_load(
                    f"http://127.0.0.1:{port}/v1/x", rate=20, duration_s=max(1.0, remaining)
                )
                end = first + window
                seen = [r for r in fake.token_requests if r["at"] <= end]
    return {
        "replicas": len(names),
        "token_lifetime_s": lifetime,
        "window_s": window,
        "token_requests": len(seen),
        "bound": int(window / lifetime) + 1,
        "request_offsets_s": [round(r["at"] - first, 2) for r in seen],
        "load_statuses": dict(statuses),
        "load_verdicts": dict(fake.verdicts),
    }


def markdown(result: dict[str, Any]) -> str:
    t1, t2, t3 = result["t1"], result["t2"], result["t3"]
    v1, v2 = t1["verdicts"], t2["verdicts"]
    lines = [
        "",
        "## Token broker (`bench/tokens.py`)",
        "",
        f"T1, provider up: tokens of {t1['token_lifetime_s']:g} s, {t1['rate']} req/s for "
        f"{t1['duration_s']:g} s: upstream verdicts ok **{v1.get('ok', 0)}**, expired "
        f"**{v1.get('expired', 0)}**, missing **{v1.get('missing', 0)}**, unknown (the app's "
        f"own header) **{v1.get('unknown', 0)}**; statuses {t1['statuses']}; "
        f"{t1['token_requests']} token requests.",
        "",
        f"T2, provider down {t2['outage_s']:g} s (tokens of {t2['token_lifetime_s']:g} s, "
        f"50 req/s): verdicts ok {v2.get('ok', 0)}, **expired {v2.get('expired', 0)}**, "
        f"missing {v2.get('missing', 0)}; the last token expired "
        f"{t2['last_token_expiry_after_outage_start_s']} s into the outage and the last request "
        f"carrying it arrived {t2['last_ok_before_expiry_s']} s before that; injection "
        f"resumed **{t2['recovery_s']} s** after the provider returned (backoff step at most "
        f"{t2['backoff_max_s']:g} s).",
        "",
        f"T3, fleet: {t3['replicas']} replicas sharing through Redis, tokens of "
        f"{t3['token_lifetime_s']:g} s, {t3['window_s']:g} s: the provider saw "
        f"**{t3['token_requests']}** token requests (bound: {t3['bound']}), at "
        f"{t3['request_offsets_s']} s; light load through the replicas' Envoys: verdicts "
        f"{t3['load_verdicts']}.",
        "",
    ]
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        single = await _single(Path(tmp), args.quick)
        fleet = await _fleet(Path(tmp), args.quick)
    return {**single, "t3": fleet}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tokens", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = asyncio.run(_main(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
