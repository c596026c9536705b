"""Probes: one module per kind (``adapters/probes/<kind>.py``), each exporting ``probe``.

They live apart from the adapter declarations because the translator imports those, and
the translator stays pure (STYLE.md 1): the client libraries (stripe, asyncpg, redis,
aiosmtplib, boto3) are imported only when a probe is first looked up.
"""

from __future__ import annotations

import importlib

from adapters.probes.context import Probe, ProbeContext

__all__ = ["Probe", "ProbeContext", "probe_for"]


def probe_for(kind: str) -> Probe:
    """The probe of ``kind`` (a registered adapter kind); KeyError when it has none."""
    from adapters import ADAPTERS

    if kind not in ADAPTERS:
        raise KeyError(kind)
    try:
        module = importlib.import_module(f"adapters.probes.{kind}")
    except ModuleNotFoundError as exc:
        raise KeyError(kind) from exc
    probe: Probe = module.probe
    return probe
