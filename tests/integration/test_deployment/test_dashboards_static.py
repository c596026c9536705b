"""The Grafana dashboard JSON: templated on integration, one data source variable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.test_deployment.paths import MANIFESTS


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    path = MANIFESTS / "grafana" / "integration-service.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    integration = variables["integration"]
    assert integration["includeAll"] and integration["multi"]
    assert "envoy_cluster_name" in integration["query"]["query"]


def test_panels(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            # Per-integration Envoy series are filtered by the variable.
            if "envoy_cluster_" in expr or "envoy_http_" in expr:
                if "_manager_" not in expr:
                    assert '=~"$integration"' in expr, (panel["title"], expr)
