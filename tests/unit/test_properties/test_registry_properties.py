"""Properties of loader and translator over generated registries (hypothesis).

1. Validation is total: any document gets a list of problems, never an exception.
2. Whatever validates converts to the model and translates (fake secret values, unique
   listen ports assigned as the store would) into a snapshot that passes the consistency
   check: every referenced route table, endpoint set and secret exists.
3. A sample of those snapshots, rendered as a static bootstrap, is accepted by the real
   Envoy (``envoy --mode validate``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.model import Integration
from control_plane.registry.loader import (
    RateRules,
    integration_from_document,
    load_rate_limits,
    validate_integration_document,
)
from control_plane.sidecar.binary import find_envoy_binary
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.translate import (
    TranslateOptions,
    TranslateResult,
    render_static_bootstrap,
    translate,
)
from tests.unit.test_properties.strategies import (
    CA_REF,
    CERT_REF,
    KEY_REF,
    documents,
    registries,
)

REPO = Path(__file__).resolve().parents[3]
FIRST_PORT = 20000


@cache
def _rules() -> RateRules:
    return load_rate_limits(REPO / "config" / "rate_limits.yaml")


@cache
def _pems() -> tuple[bytes, bytes, bytes]:
    """A CA, and a client certificate and key it signed (Envoy parses them on load)."""
    ca = trustme.CA()
    client = ca.issue_cert("client.example.com")
    return ca.cert_pem.bytes(), client.cert_chain_pems[0].bytes(), client.private_key_pem.bytes()


def _valid(docs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [d for d in docs if validate_integration_document(d, _rules()) == []]


def _integrations(docs: Sequence[Mapping[str, Any]]) -> list[Integration]:
    """The model, with listen ports assigned (unique, as the store assigns them)."""
    items = [integration_from_document(d, source="registered", rules=_rules()) for d in docs]
    return [i.replace(listen_port=FIRST_PORT + n) for n, i in enumerate(items)]


def _refs(items: Iterable[Integration]) -> set[str]:
    found: set[str] = set()
    for item in items:
        found |= {ref.ref for ref in item.credentials.values()}
        tls = item.upstream.tls
        found |= {r.ref for r in (tls.ca_bundle, tls.client_cert, tls.client_key) if r}
    return found


def _secrets(items: Iterable[Integration]) -> dict[str, bytes | str]:
    """A fake value for every reference; real PEMs where Envoy will parse one."""
    ca, cert, key = _pems()
    values: dict[str, bytes | str] = {}
    for ref in _refs(items):
        if ref.startswith(CA_REF):
            values[ref] = ca
        elif ref.startswith(CERT_REF):
            values[ref] = cert
        elif ref.startswith(KEY_REF):
            values[ref] = key
        else:
            values[ref] = f"fake-{len(values)}-value"
    return values


def _options(items: Iterable[Integration], root: str = "/tmp/is-props") -> TranslateOptions:
    consul = {i.id: [("10.0.0.1", 8080)] for i in items if i.upstream.discovery == "consul"}
    return TranslateOptions(
        cache_root=f"{root}/cache", access_log_dir=f"{root}/logs", endpoints=consul
    )


def _translated(docs: Sequence[Mapping[str, Any]], root: str = "/tmp/is-props") -> TranslateResult:
    items = _integrations(docs)
    return translate(items, _secrets(items), _options(items, root))


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.one_of(documents(), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
def test_validation_never_raises(doc: dict[str, Any]) -> None:
    problems = validate_integration_document(doc, _rules())
    assert isinstance(problems, list)
    assert all(p.message for p in problems)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(registries())
def test_valid_registry_translates_to_a_consistent_snapshot(docs: list[dict[str, Any]]) -> None:
    valid = _valid(docs)
    if not valid:
        return
    result = _translated(valid)
    snapshot = Snapshot.build(result.resources)  # raises InconsistentSnapshot
    enabled = {d["id"] for d in valid if d.get("enabled", True)}
    listeners = {n for n in snapshot.get(result_type(result, "Listener")) if "_" not in n}
    assert listeners == enabled, "one listener per enabled integration, named by its id"
    assert snapshot.version == Snapshot.build(_translated(valid).resources).version
    secret_values = [v for v in _secrets(_integrations(valid)).values() if isinstance(v, str)]
    for warning in result.warnings:
        assert not any(value in warning for value in secret_values), "no value in warnings"


def result_type(result: TranslateResult, suffix: str) -> str:
    return next(t for t in result.resources if t.endswith(f".{suffix}"))


@pytest.mark.envoy
@settings(
    max_examples=5,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(registries(max_size=3).map(_valid).filter(bool))
def test_generated_snapshots_are_accepted_by_envoy(docs: list[Mapping[str, Any]]) -> None:
    with tempfile.TemporaryDirectory(prefix="is-props-") as root:
        (Path(root) / "logs").mkdir()
        result = _translated(docs, root)
        Snapshot.build(result.resources)
        config = render_static_bootstrap(result.resources, admin_port=0)
        path = Path(root) / "envoy.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        done = subprocess.run(
            [str(find_envoy_binary()), "--mode", "validate", "-c", str(path), "-l", "warning"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, f"{json.dumps(docs, indent=1)}\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize(
    ("policies", "pointer"),
    [
        # Found by the Envoy sample above: documents that validated, then were refused.
        ({"connect_timeout": "0s"}, "/policies/connect_timeout"),
        ({"outlier_detection": {"interval": "0.2ms"}}, "/policies/outlier_detection/interval"),
        ({"outlier_detection": {"max_ejection_time": "3s"}}, "/policies/outlier_detection"),
    ],
)
def test_what_envoy_refuses_is_a_validation_problem(policies: dict[str, Any], pointer: str) -> None:
    doc = {"id": "api", "kind": "http", "upstream": "https://api.example.com"}
    problems = validate_integration_document({**doc, "policies": policies}, _rules())
    assert [p.pointer for p in problems if p.pointer.startswith(pointer)], problems
    assert validate_integration_document({**doc, "policies": {"timeout": 0.5}}, _rules()) == []
