"""A loopback SMTP server (aiosmtpd), optionally offering STARTTLS with a test CA's cert.

aiosmtpd runs its own event loop in a thread; the handler records, per NOOP, whether the
session had been upgraded to TLS -- what a test needs to show STARTTLS really happened.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.ports import free_port

__all__ = ["SmtpRecorder", "running_smtp"]


@dataclass
class SmtpRecorder:
    port: int = 0
    noops: list[bool] = field(default_factory=list)  # True: the session was TLS

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        self.noops.append(session.ssl is not None)
        return "250 OK"


@contextmanager
def running_smtp(tls_context: ssl.SSLContext | None = None) -> Iterator[SmtpRecorder]:
    recorder = SmtpRecorder(port=free_port())
    # STARTTLS is offered in EHLO only when the server has a TLS context.
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=recorder.port,
        tls_context=tls_context,
    )
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()
