"""Moved to ``tests.unit.test_xds.test_translate.cases`` (test folders mirror the package).

This alias only keeps the importers that have not moved yet working
(``tests/e2e/test_translate_envoy.py``, ``tests/unit/test_xds/test_pipeline.py``); delete
this folder once they import the new path.
"""

from __future__ import annotations

from tests.unit.test_xds.test_translate.cases import CASES, EXAMPLE_SECRETS, Case

__all__ = ["CASES", "EXAMPLE_SECRETS", "Case"]
