"""Small constructors for protobuf well-known types shared by the resource modules.

``ads`` and ``duration`` may hand out one shared message for equal arguments (built once:
the translator builds the same few thousands of times). Put them into a message --
constructor argument, ``CopyFrom``, ``append`` -- which copies them; never modify them.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from envoy.config.core.v3 import config_source_pb2, extension_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from control_plane.xds.resources import message_type_url

__all__ = ["ads", "duration", "is_ip", "pack", "struct", "typed_extension"]


@functools.lru_cache(maxsize=256)
def duration(seconds: float) -> Any:
    """A ``google.protobuf.Duration`` (shared: see the module doc); milliseconds are the
    finest grain the registry has."""
    millis = round(seconds * 1000)
    return duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


def pack(message: Message) -> Any:
    """``Any``-pack deterministically: map fields (e.g. ``Struct``) serialise in key order,
    so the same input yields byte-identical resources and a stable content-hash version.
    The same as ``Any.Pack(message, deterministic=True)``, without its per-call lookups."""
    return any_pb2.Any(
        type_url=message_type_url(message), value=message.SerializeToString(deterministic=True)
    )


def typed_extension(name: str, message: Message) -> Any:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(message))


@functools.cache
def ads() -> Any:
    """A config source meaning "over the same ADS stream", v3 resources (shared: see the
    module doc)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def struct(values: dict[str, Any]) -> Any:
    """A ``Struct`` of ``values``, as ``Struct.update`` fills it."""
    result = struct_pb2.Struct()
    fields = result.fields
    for key, value in values.items():
        # Struct.update's own cases for scalars (bool before int: bool is an int).
        if isinstance(value, str):
            fields[key].string_value = value
        elif isinstance(value, bool):
            fields[key].bool_value = value
        elif isinstance(value, int | float):
            fields[key].number_value = value
        else:
            result.update({key: value})
    return result


@functools.lru_cache(maxsize=4096)
def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
