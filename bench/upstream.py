"""A fast loopback HTTP/1.1 upstream for the benchmarks (its own process).

Raw asyncio protocol, keep-alive, fixed tiny response: the upstream should add as little
latency and jitter as possible so the differences measured are the proxies'. Every response
carries ``x-upstream: <label>``, which tells the load generator that a request *reached* the
upstream (a proxy's own rejection has no such header) and, with two ports, which of the two
answered (the propagation benchmark switches an integration between them).

Signals, so the orchestrator can change the mode under load without going through a proxy:
``SIGUSR1`` fail (answer every request 503, recording when each arrived); ``SIGUSR2`` write
the counters and the arrival times to ``--stats`` and go back to healthy. Prints
``READY {"ports": [...]}`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import signal
import time
from pathlib import Path

__all__ = ["main"]


class _State:
    def __init__(self) -> None:
        self.failing = False
        self.fail_since_ns = 0
        self.total = 0
        self.failed_arrivals: list[int] = []

    def dump(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "total": self.total,
                    "fail_since_ns": self.fail_since_ns,
                    "failed_arrivals_ns": self.failed_arrivals,
                }
            )
        )


def _response(label: str, status: int) -> bytes:
    body = b"ok\n" if status == 200 else b"failing\n"
    reason = "OK" if status == 200 else "Service Unavailable"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nx-upstream: {label}\r\n\r\n"
    ).encode() + body


class _Http(asyncio.Protocol):
    def __init__(self, state: _State, label: str) -> None:
        self.state = state
        self.ok = _response(label, 200)
        self.fail = _response(label, 503)
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buf[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop > 0 else len(head)])
            if len(self.buf) < end + 4 + length:
                break
            self.buf = self.buf[end + 4 + length :]
            self.state.total += 1
            if self.state.failing:
                self.state.failed_arrivals.append(time.monotonic_ns())
                out.append(self.fail)
            else:
                out.append(self.ok)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def _serve(args: argparse.Namespace) -> None:
    state = _State()
    loop = asyncio.get_running_loop()
    servers = []
    ports = []
    for label in args.labels.split(","):
        server = await loop.create_server(
            functools.partial(_Http, state, label), "127.0.0.1", 0, backlog=1024
        )
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])

    def fail() -> None:
        state.failing = True
        state.fail_since_ns = time.monotonic_ns()
        state.failed_arrivals = []

    def dump() -> None:
        state.dump(args.stats)
        state.failing = False

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, fail)
    loop.add_signal_handler(signal.SIGUSR2, dump)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("READY " + json.dumps({"ports": ports}), flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    p.add_argument("--labels", default="A", help="comma-separated; one port per label")
    p.add_argument("--stats", type=Path, required=True)
    p.add_argument("--cpu", type=int)
    args = p.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    gc.freeze()
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
