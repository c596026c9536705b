"""Integration kinds: one module per kind, each exporting ``ADAPTER``."""

from __future__ import annotations

from collections.abc import Mapping

from adapters import auth0, email, http, postgresql, redis, storage, stripe
from adapters.base import AdapterSpec, CredentialSlot

__all__ = ["ADAPTERS", "AdapterSpec", "CredentialSlot", "adapter_for"]

ADAPTERS: Mapping[str, AdapterSpec] = {
    module.ADAPTER.kind: module.ADAPTER
    for module in (auth0, postgresql, redis, stripe, email, storage, http)
}


def adapter_for(kind: str) -> AdapterSpec:
    return ADAPTERS[kind]
