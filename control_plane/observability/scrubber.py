"""The last line of defence against secrets in logs: every registered value masked.

Every credential value the control plane resolves, every API key it issues and every token
it mints is registered here; :func:`scrub` replaces each occurrence of any of them in a
line with ``***``, overlapping occurrences as one span so that no part of either shows.

A fleet registers thousands of values, and every API request writes a log line. Checking
each value in turn cost about 1 ms a line at 10,000 values. Instead an Aho-Corasick
automaton (``pyahocorasick``) finds all of them in one pass over the line. Values
registered since it was built wait in a short list, checked one by one, until there are
enough of them to rebuild it (outside the lock, on the thread that logs next). A value
forgotten since is still found by the automaton but no longer masked. So a registration
or a rotation never costs a rebuild per line, and a value registered on a thread is
masked in that thread's next line (the registration and the list are one locked step).
If a rebuild fails, the previous automaton and the growing list keep masking everything.
"""

from __future__ import annotations

import threading
from typing import Any

import ahocorasick

__all__ = ["forget_secret", "register_secret", "scrub"]

_MIN_LENGTH = 4  # shorter values would mask ordinary words
_PENDING_MAX = 32  # values checked one by one before the automaton is rebuilt

_lock = threading.Lock()
_secrets: set[str] = set()  # every registered value
_pending: set[str] = set()  # registered values the automaton does not hold
_automaton: Any = None  # ahocorasick.Automaton over ``_built``, or None
_built: frozenset[str] = frozenset()
_dead = 0  # values in the automaton forgotten since it was built
_building = False
_retry_above = _PENDING_MAX  # raised after a failed rebuild, so failures do not repeat per line


def register_secret(value: str) -> None:
    """Remember a secret value so that no log line can print it."""
    if len(value) < _MIN_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            _secrets.add(value)
            _pending.add(value)


def forget_secret(value: str) -> None:
    """Stop scrubbing ``value`` (a short-lived token long replaced), so the set stays small."""
    global _dead
    with _lock:
        if value in _secrets:
            _secrets.discard(value)
            _pending.discard(value)
            if value in _built:
                _dead += 1


def _rebuild_if_due() -> None:
    global _automaton, _built, _dead, _building, _pending, _retry_above
    if len(_pending) <= _retry_above and _dead <= _PENDING_MAX + len(_built) // 2:
        return
    with _lock:
        if _building:
            return
        _building, members = True, frozenset(_secrets)
    try:
        automaton = None
        if members:
            automaton = ahocorasick.Automaton()
            for value in members:
                automaton.add_word(value, value)
            automaton.make_automaton()
    except Exception:  # keep masking with what there is: never raise in logging
        with _lock:
            _building, _retry_above = False, 2 * max(len(_pending), _PENDING_MAX)
        return
    with _lock:
        _automaton, _built = automaton, members
        _pending = _secrets - members  # registered while it was built
        _dead = len(members - _secrets)  # forgotten while it was built
        _building, _retry_above = False, _PENDING_MAX


def scrub(text: str) -> str:
    """``text`` with every occurrence of every registered secret replaced by ``***``."""
    _rebuild_if_due()
    with _lock:
        automaton, pending = _automaton, tuple(_pending)
    spans: list[tuple[int, int]] = []
    if automaton is not None:
        for end, value in automaton.iter(text):
            if value in _secrets:  # not forgotten since the automaton was built
                spans.append((end + 1 - len(value), end + 1))
    for value in pending:
        start = text.find(value)
        while start != -1:
            spans.append((start, start + len(value)))
            start = text.find(value, start + 1)
    if not spans:
        return text
    spans.sort()
    parts, at = [], 0
    for start, stop in spans:
        if stop <= at:
            continue  # inside a span already masked
        if start >= at:
            parts += [text[at:start], "***"]
        at = stop  # overlapping the previous span: one mask covers both
    parts.append(text[at:])
    return "".join(parts)
