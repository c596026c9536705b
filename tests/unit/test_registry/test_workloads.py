"""Workloads of the shared topology: the file, identities, and who may run what."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.model import Integration, TlsSettings, Upstream
from control_plane.problems import RegistryError
from control_plane.registry.workloads import Workload, WorkloadBook, WorkloadsFile, load_workloads


def _item(ident: str, tenant: str, workloads: tuple[str, ...] = ()) -> Integration:
    upstream = Upstream("api.example.com", 443, "https", TlsSettings())
    return Integration(ident, "http", upstream, tenant=tenant, workloads=workloads)


def test_a_workload_runs_only_its_tenants_integrations() -> None:
    web = Workload("web", "acme")
    assert web.may_run(_item("a", "acme"))
    assert web.may_run(_item("b", "acme", ("web", "jobs")))
    assert not web.may_run(_item("c", "acme", ("jobs",)))
    # Naming a workload of another tenant gives it nothing: the tenant check is not optional.
    assert not web.may_run(_item("d", "globex", ("web",)))


def test_identities_map_to_one_workload(tmp_path: Path) -> None:
    path = tmp_path / "workloads.yaml"
    path.write_text(
        "workloads:\n"
        "  - name: web\n    tenant: acme\n"
        "    identities: [spiffe://td/ns/acme/sa/web, dns:Web.Acme.svc]\n"
        "  - name: jobs\n    tenant: acme\n    identities: [spiffe://td/ns/acme/sa/jobs]\n"
    )
    book = load_workloads(path)
    assert book.identify(["spiffe://td/ns/acme/sa/web"], []) == book.workloads["web"]
    assert book.identify([], ["web.acme.svc"]) == book.workloads["web"]
    assert book.identify(["spiffe://td/ns/acme/sa/other"], []) is None
    # One certificate naming two workloads is refused, not resolved to either.
    assert book.identify(["spiffe://td/ns/acme/sa/web", "spiffe://td/ns/acme/sa/jobs"], []) is None


def test_spiffe_derivation_is_off_unless_configured_and_never_shadows() -> None:
    declared = Workload("acme.web", "acme", ("spiffe://td/ns/acme/sa/web-v2",))
    assert WorkloadBook.of([declared]).identify(["spiffe://td/ns/acme/sa/api"], []) is None
    book = WorkloadBook.of([declared], derive_from_spiffe="td")
    derived = book.identify(["spiffe://td/ns/acme/sa/api"], [])
    assert derived == Workload("acme.api", "acme", ("spiffe://td/ns/acme/sa/api",), derived=True)
    # A derived name equal to a declared workload's is refused: only its identities reach it.
    assert book.identify(["spiffe://td/ns/acme/sa/web"], []) is None
    assert book.identify(["spiffe://other/ns/acme/sa/api"], []) is None
    assert book.identify(["spiffe://td/ns/acme/api"], []) is None


def test_an_invalid_file_names_the_line_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "workloads.yaml"
    path.write_text("workloads:\n  - name: web\n    tenant: acme\n    identities: [spiffe://x/a]\n")
    watched = WorkloadsFile(path)
    watched.load()
    path.write_text(
        "workloads:\n"
        "  - name: web\n    tenant: acme\n    identities: [spiffe://x/a]\n"
        "  - name: api\n    tenant: acme\n    identities: [spiffe://x/a]\n"
    )
    assert watched.reload() is False
    assert watched.error is not None
    problem = watched.error.problems[0]
    assert problem.line == 7 and "already the identity of workload 'web'" in problem.message
    assert set(watched.book.workloads) == {"web"}
    with pytest.raises(RegistryError) as caught:
        path.write_text("workloads:\n  - name: web\n    tenant: acme\n    identities: []\n")
        load_workloads(path)
    assert caught.value.problems[0].line == 4
