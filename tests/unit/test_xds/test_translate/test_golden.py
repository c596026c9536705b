"""Golden files: each registry case in ``cases.py`` -> ``tests/golden/translate_<case>.json``.

The file holds every resource as ``MessageToJson(sort_keys=True)`` plus the warnings, and
is compared exactly. After an intended change, rewrite them and review the diff::

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_xds/test_translate/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]

from control_plane.xds.translate import Resources, translate
from tests.unit.test_xds.test_translate.cases import CASES, REPO, Case

GOLDEN_DIR = REPO / "tests" / "golden"


def render(resources: Resources, warnings: list[str]) -> str:
    doc: dict[str, Any] = {
        "resources": {
            type_url: {
                name: json.loads(
                    json_format.MessageToJson(
                        message, sort_keys=True, preserving_proto_field_name=True
                    )
                )
                for name, message in sorted(by_name.items())
            }
            for type_url, by_name in sorted(resources.items())
        },
        "warnings": warnings,
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden(case: Case) -> None:
    result = translate(case.integrations(), case.secrets, case.options)
    actual = render(result.resources, result.warnings)
    path: Path = GOLDEN_DIR / f"translate_{case.name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8"), (
        f"{path.name} differs; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    )
