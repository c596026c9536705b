"""The status page's browser tests' stack: the repository's example integrations (each on a
free port), a breaker-prone loopback integration, a hostile description, a real Envoy, the
real service with authentication on, and API keys for each role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.upstream import Upstream, running_upstream

__all__ = ["EXAMPLE_IDS", "XSS", "UiStack", "ui_stack"]

ROOT = Path(__file__).resolve().parents[3]
XSS = "<img src=x onerror=alert(1)>"
# Values for the references the example file names (never shown: the page shows references).
EXAMPLE_ENV = {
    name: f"ui-e2e-{name.lower()}-value"
    for name in (
        "STRIPE_SECRET_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "AUTH0_CLIENT_ID",
        "AUTH0_CLIENT_SECRET",
        "STORAGE_SERVICE_ACCESS_KEY",
        "STORAGE_SERVICE_SECRET_KEY",
        "WEATHER_API_KEY",
    )
}


def _examples() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "config" / "integrations.yaml").read_text())
    items: list[dict[str, Any]] = doc["integrations"]
    for item in items:
        item["listen_port"] = free_port()
    return items


EXAMPLE_IDS = tuple(item["id"] for item in _examples())


@dataclass
class UiStack:
    stack: Stack
    flaky: Upstream
    ok: Upstream
    keys: dict[str, str] = field(default_factory=dict)  # role label -> API key

    @property
    def url(self) -> str:
        return self.stack.service.base_url + "/ui"

    async def new_key(self, label: str, role: str, tenant: str = "*") -> str:
        body = {"name": label, "role": role, "tenant": tenant}
        headers = self.stack.service.admin_headers
        async with self.stack.session.post(
            self.stack.api("/api-keys"), json=body, headers=headers
        ) as response:
            assert response.status == 201, await response.text()
            key = str((await response.json())["key"])
        self.keys[label] = key
        return key


@asynccontextmanager
async def ui_stack(workdir: Path) -> AsyncIterator[UiStack]:
    async with running_upstream() as ok, running_upstream() as flaky:
        items = _examples()
        ports = {item["id"]: item["listen_port"] for item in items}
        ports["flaky"] = free_port()
        items.append(
            {
                "id": "flaky",
                "kind": "http",
                "tenant": "default",
                "description": "A loopback upstream that fails on demand",
                "upstream": flaky.url,
                "listen_port": ports["flaky"],
                "policies": {
                    "retries": {"max_retries": 0},
                    "outlier_detection": {
                        "consecutive_5xx": 3,
                        "interval": "1s",
                        "base_ejection_time": "60s",
                    },
                },
            }
        )
        items.append(
            {
                "id": "hostile",
                "kind": "http",
                "tenant": "default",
                "description": XSS,
                "upstream": ok.url,
                "listen_port": free_port(),
            }
        )
        cp = workdir / "cp"
        cp.mkdir(parents=True)
        # The examples name rules of the example rate-limits file.
        (cp / "rate_limits.yaml").write_text((ROOT / "config" / "rate_limits.yaml").read_text())
        registry = yaml.safe_dump({"integrations": items}, sort_keys=False)
        async with running_stack(
            workdir, registry, env=EXAMPLE_ENV, auth=True, ports=ports
        ) as stack:
            yield UiStack(stack, flaky, ok)
