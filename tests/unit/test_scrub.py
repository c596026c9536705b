"""The log scrubber: every occurrence of every registered secret masked, at any number."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import ahocorasick
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.observability.logging import forget_secret, register_secret, scrub


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Secrets a test registers; forgotten afterwards (the set is process-wide)."""
    values: list[str] = []
    yield values
    for value in values:
        forget_secret(value)


def _register(values: list[str], *new: str) -> None:
    for value in new:
        register_secret(value)
        values.append(value)


def _masked(text: str, secret_values: set[str]) -> str:
    """The reference: mask the union of every occurrence of every secret, found by brute
    force; adjacent occurrences keep a mask each."""
    spans = sorted(
        (i, i + len(s))
        for s in secret_values
        for i in range(len(text) - len(s) + 1)
        if text.startswith(s, i)
    )
    out, at = [], 0
    for start, stop in spans:
        if stop <= at:
            continue
        if start >= at:
            out += [text[at:start], "***"]
        at = stop
    return "".join([*out, text[at:]])


def test_thousands_of_secrets_each_masked_in_one_pass(registered: list[str]) -> None:
    values = [f"sk_live_{secrets.token_hex(12)}" for _ in range(3000)]
    _register(registered, *values)
    for value in values[::97]:
        line = f'{{"message": "calling with {value} and Bearer {value}x", "n": 1}}'
        assert scrub(line) == '{"message": "calling with *** and Bearer ***x", "n": 1}'
    assert scrub("nothing secret here") == "nothing secret here"


def test_overlapping_and_adjacent_occurrences(registered: list[str]) -> None:
    _register(registered, "abcdef", "cdefgh", "wxyz")
    assert scrub("[abcdefgh]") == "[***]"  # no part of either secret shows
    assert scrub("wxyzwxyz.") == "******."  # two occurrences, two masks
    assert scrub("abcdefabcdef") == "******"


def test_a_forgotten_secret_is_no_longer_masked(registered: list[str]) -> None:
    _register(registered, "token-one-1234", "token-two-5678")
    assert scrub("token-one-1234 token-two-5678") == "*** ***"
    forget_secret("token-one-1234")
    assert scrub("token-one-1234 token-two-5678") == "token-one-1234 ***"
    assert scrub("token-one") == "token-one"  # short values and prefixes are not secrets
    register_secret("abc")  # under four characters: never registered
    assert scrub("abc") == "abc"


def test_a_secret_inside_a_longer_one_found_first(registered: list[str]) -> None:
    # "bcd1" ends before "abcd12" does, but "abcd12" starts first: nothing of it may show.
    _register(registered, "bcd1", "abcd12")
    assert scrub("abcd12") == "***"
    assert scrub("xabcd12bcd1") == "x******"


# Values of another alphabet, enough to make the scrubber build its automaton.
FILLERS = [f"ZZ{i:04d}QQ" for i in range(40)]


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.text("abc-", min_size=4, max_size=7), min_size=1, max_size=8, unique=True),
    built=st.integers(0, 8),
    forgotten=st.integers(0, 8),
    data=st.data(),
)
def test_scrub_equals_masking_every_occurrence(
    values: list[str], built: int, forgotten: int, data: st.DataObject
) -> None:
    """Some values in the automaton (registered before it was built), the rest waiting,
    and some of both forgotten: the mask is the brute-force one over what is registered."""
    # Lines made of the secrets themselves, pieces of them and other characters, so that
    # occurrences overlap, nest and touch.
    pieces = st.one_of(
        st.sampled_from(values),
        st.sampled_from(values).map(lambda v: v[1:]),
        st.text("abc-x", max_size=3),
    )
    text = "".join(data.draw(st.lists(pieces, max_size=12)))
    for value in [*values[:built], *FILLERS]:
        register_secret(value)
    scrub("")  # builds the automaton over those
    for value in values[built:]:
        register_secret(value)
    gone = set(values[:forgotten])
    for value in gone:
        forget_secret(value)
    try:
        assert scrub(text) == _masked(text, set(values) - gone)
    finally:
        for value in [*values, *FILLERS]:
            forget_secret(value)


def test_registrations_between_lines_rebuild_rarely(
    registered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value registered before each line (tokens minted, keys issued) costs a rebuild only
    every few dozen values, and is masked in the very next line."""
    builds = []
    real = ahocorasick.Automaton

    def counting() -> object:
        builds.append(1)
        return real()

    monkeypatch.setattr(ahocorasick, "Automaton", counting)
    for i in range(640):
        value = f"minted-token-{i:05d}"
        _register(registered, value)
        assert scrub(f"Bearer {value}") == "Bearer ***"
    assert 0 < len(builds) <= 640 // 32 + 1


def test_a_failed_rebuild_still_masks_everything(
    registered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing() -> object:
        raise MemoryError("no room for the automaton")

    monkeypatch.setattr(ahocorasick, "Automaton", failing)
    values = [f"unbuilt-secret-{i:04d}" for i in range(100)]
    _register(registered, *values)
    for value in values[::7]:
        assert scrub(f"x {value} y") == "x *** y"  # never raises, never leaks


def test_threads_registering_while_others_log(registered: list[str]) -> None:
    values = [f"concurrent-secret-{i:04d}" for i in range(400)]
    errors: list[BaseException] = []

    def register() -> None:
        for value in values:
            register_secret(value)

    def log() -> None:
        try:
            for i in range(2000):
                scrub(f"line {i}: {values[i % len(values)]}")
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=register), *(threading.Thread(target=log) for _ in range(3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    registered.extend(values)
    assert errors == []
    assert all(scrub(f"x {v} y") == "x *** y" for v in values)
