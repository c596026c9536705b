"""Small constructors for protobuf well-known types shared by the resource modules."""

from __future__ import annotations

import ipaddress
from typing import Any

from envoy.config.core.v3 import config_source_pb2, extension_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

__all__ = ["ads", "duration", "is_ip", "pack", "struct", "typed_extension"]


def duration(seconds: float) -> Any:
    """A ``google.protobuf.Duration``; milliseconds are the finest grain the registry has."""
    millis = round(seconds * 1000)
    return duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


def pack(message: Message) -> Any:
    """``Any``-pack deterministically: map fields (e.g. ``Struct``) serialise in key order,
    so the same input yields byte-identical resources and a stable content-hash version."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def typed_extension(name: str, message: Message) -> Any:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(message))


def ads() -> Any:
    """A config source meaning "over the same ADS stream", v3 resources."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def struct(values: dict[str, Any]) -> Any:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
