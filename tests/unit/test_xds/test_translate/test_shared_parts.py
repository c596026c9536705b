"""The translator builds its constant parts once (``functools.cache``); no result shares them.

Every resource a translation returns is its own: clearing all of them, or every message
nested in them, must leave the next translation of the same registry byte-identical.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message  # type: ignore[import-untyped]

from control_plane.xds.translate import translate
from control_plane.xds.translate.messages import ads, duration
from tests.unit.test_xds.test_translate.cases import CASES, Case


def _encoded(case: Case) -> dict[tuple[str, str], bytes]:
    result = translate(case.integrations(), case.secrets, case.options)
    return {
        (type_url, name): message.SerializeToString(deterministic=True)
        for type_url, by_name in result.resources.items()
        for name, message in by_name.items()
    }


def _scribble(message: Message) -> None:
    """Change every nested message in place (depth first), then clear the message."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            children: list[Any] = [v for v in value.values() if isinstance(v, Message)]
        else:
            children = list(value) if field.is_repeated else [value]
        for child in children:
            _scribble(child)
    message.Clear()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_changing_a_result_changes_no_later_translation(case: Case) -> None:
    before = _encoded(case)
    shared = (ads().SerializeToString(), duration(1.5).SerializeToString())
    result = translate(case.integrations(), case.secrets, case.options)
    for by_name in result.resources.values():
        for message in by_name.values():
            _scribble(message)
    assert _encoded(case) == before
    assert (ads().SerializeToString(), duration(1.5).SerializeToString()) == shared
