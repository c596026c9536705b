"""Structured JSON logs with a correlation id, and a last line of defence against secrets.

Every record carries ``request_id`` and ``trace_id`` from context variables set by the API
middleware, so a request's log lines can be joined. The formatters replace any
registered secret value (credential values the control plane resolved) with ``***``:
:func:`scrub` runs on every formatted line.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
import threading
from typing import Any

import ahocorasick

__all__ = [
    "REQUEST_ID",
    "TRACE_ID",
    "configure_logging",
    "forget_secret",
    "register_secret",
    "scrub",
]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

_SECRETS: set[str] = set()
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# One automaton finds every registered secret in a single pass over a line, whatever their
# number (checking each secret in turn cost 75 us a line at 1,000 secrets: more than the
# request it logged). Rebuilt on the first scrub after a change; the lock keeps the set and
# the automaton consistent for the threads that log (to_thread workers, gRPC's).
_LOCK = threading.Lock()
_matcher: Any = None  # ahocorasick.Automaton, or None when there is no secret
_stale = False


def register_secret(value: str) -> None:
    """Remember a secret value so that no log line can print it."""
    global _stale
    if len(value) >= 4 and value not in _SECRETS:
        with _LOCK:
            _SECRETS.add(value)
            _stale = True


def forget_secret(value: str) -> None:
    """Stop scrubbing ``value`` (a short-lived token long replaced), so the set stays small."""
    global _stale
    with _LOCK:
        if value in _SECRETS:
            _SECRETS.discard(value)
            _stale = True


def _current() -> Any:
    global _matcher, _stale
    if _stale:
        with _LOCK:
            if _stale:
                automaton = None
                if _SECRETS:
                    automaton = ahocorasick.Automaton()
                    for secret in _SECRETS:
                        automaton.add_word(secret, len(secret))
                    automaton.make_automaton()
                _matcher, _stale = automaton, False
    return _matcher


def scrub(text: str) -> str:
    """``text`` with every occurrence of every registered secret replaced by ``***``.

    Overlapping occurrences (of one secret, or of two that share characters) are masked
    as one span, so no part of either shows."""
    matcher = _current()
    if matcher is None:
        return text
    spans = sorted((end + 1 - length, end + 1) for end, length in matcher.iter(text))
    if not spans:
        return text
    parts, at = [], 0
    for start, stop in spans:
        if stop <= at:
            continue  # inside a span already masked
        if start >= at:
            parts += [text[at:start], "***"]
        at = stop  # overlapping the previous span: one mask covers both
    parts.append(text[at:])
    return "".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (rid := REQUEST_ID.get()) is not None:
            out["request_id"] = rid
        if (tid := TRACE_ID.get()) is not None:
            out["trace_id"] = tid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(out, default=str))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = {
            k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        }
        rid = REQUEST_ID.get()
        head = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        if rid:
            head += f" [request_id={rid}]"
        if extras:
            head += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            head += "\n" + self.formatException(record.exc_info)
        return scrub(head)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither formatter prints the caller, the process or the thread: not computing them
    # saves a stack walk and a system call per record (the logging HOWTO's "Optimization";
    # every API request writes one record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
