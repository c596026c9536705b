"""The OpenAPI document matches the app's routes, is valid OpenAPI 3.1, and docs/api.md is
generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from control_plane.api.openapi.cli import DEFAULT_TEMPLATE, main
from control_plane.api.openapi.markdown import render_markdown
from control_plane.api.routes import openapi_document
from control_plane.app import create_app
from control_plane.registry.schema import integration_schema
from control_plane.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _registered_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings(data_dir=tmp_path, xds_port=0, envoy_admin_port=0))
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    # aiohttp adds HEAD beside every GET (allow_head); it is implied by the GET operation.
    return {(m, p) for m, p in routes if not (m == "HEAD" and ("GET", p) in routes)}


def _documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_registered_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    registered = _registered_routes(tmp_path)
    documented = _documented_routes(openapi_document())
    assert registered - documented == set(), "routes missing from /openapi.json"
    assert documented - registered == set(), "documented routes the app does not serve"
    assert ("POST", "/integrations/{integration_id}/circuit-breaker/reset") in registered
    assert ("GET", "/openapi.json") in registered


def test_document_is_valid_openapi_3_1() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves() -> None:
    document = openapi_document()
    for ref in _refs(document):
        assert ref.startswith("#/components/"), ref
        _, _, kind, name = ref.split("/")
        assert name in document["components"][kind], ref


def test_operations_have_unique_ids_and_problem_errors() -> None:
    document = openapi_document()
    ids = []
    for item in document["paths"].values():
        for operation in item.values():
            ids.append(operation["operationId"])
            for status, response in operation["responses"].items():
                if int(status) < 400 or "$ref" in response:
                    continue
                content = response.get("content", {})
                if status == "503" and "application/json" in content:
                    continue  # /health/ready reports its checks as JSON either way
                assert list(content) == ["application/problem+json"], (status, operation)
    assert len(ids) == len(set(ids))


def test_integration_body_is_the_registry_schema() -> None:
    schema = openapi_document()["components"]["schemas"]["IntegrationInput"]
    registry = integration_schema()
    read_only = {name for name, sub in schema["properties"].items() if sub.get("readOnly")}
    assert read_only == {"version", "source", "created_at", "updated_at", "endpoint"}
    editable = {k: v for k, v in schema["properties"].items() if k not in read_only}
    assert editable == {k: v for k, v in registry["properties"].items() if k not in read_only}
    assert schema["allOf"] == registry["allOf"]
    assert "$schema" not in schema


def test_example_integrations_fit_the_request_schema() -> None:
    items = yaml.safe_load((ROOT / "config" / "integrations.yaml").read_text())["integrations"]
    schema = openapi_document()["components"]["schemas"]["IntegrationInput"]
    validator = jsonschema.Draft202012Validator(schema)
    assert items
    for item in items:
        validator.validate(item)


def test_docs_api_md_is_generated_from_the_document() -> None:
    expected = render_markdown(openapi_document(), DEFAULT_TEMPLATE.read_text(encoding="utf-8"))
    actual = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/api.md is stale: run python -m control_plane.api.openapi --markdown > docs/api.md"
    )


def test_markdown_covers_every_operation_and_the_semantics() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for method, path in _documented_routes(openapi_document()):
        assert f"### `{method} {path}`" in text
    for section in (
        "### Circuit breaker state",
        "### Circuit breaker reset",
        "### Response cache",
        "### Versions: `ETag`, `If-Match`, `If-None-Match`",
        "### Errors: `application/problem+json`",
    ):
        assert section in text


def test_cli_prints_json_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert '"openapi": "3.1.0"' in capsys.readouterr().out
    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out == (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
