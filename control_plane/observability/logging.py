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
from typing import Any

from control_plane.observability.scrubber import forget_secret, register_secret, scrub

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

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


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
