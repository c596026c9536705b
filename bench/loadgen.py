"""Open-loop HTTP/1.1 load generator (one process, one core, no asyncio).

Requests are due at fixed intended times ``t0 + i / rate`` whatever the server does, and
latency is measured from the *intended* send time, so a stalled server is charged for the
requests that would have been sent during the stall (no coordinated omission; this is the
wrk2 method). When every connection is busy a due request waits in a backlog, and a new
connection is opened up to ``--max-connections``.

Precision: a plain select() loop with timer slack set to 1 ns, so the wake-up for the next
send is accurate to a few microseconds (asyncio's epoll timeouts round to milliseconds,
which would add up to 1 ms to every measured latency). The send lag (actual - intended) is
reported so the generator's own accuracy is visible in the results.

``--closed N`` switches to a closed loop: N connections send back to back, which measures
throughput (requests per second) rather than latency at a rate. Either way the run is
bounded by ``--duration`` plus ``--timeout`` and by the request count.

Output: one JSON document (``--out``) with per-request arrays.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import select
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main"]

_PR_SET_TIMERSLACK = 29
MARKER = b"\r\nx-upstream:"


def _tight_timers() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: default slack (tens of microseconds)
        pass


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    index: int = -1
    sent_ns: int = 0
    header_end: int = -1
    total: int = -1


class _Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host: str = args.host
        self.port: int = args.port
        self.max_connections: int = args.max_connections
        extra = "".join(f"{h}\r\n" for h in args.header)
        paths: list[str] = args.path or ["/"]
        self.requests = [
            (
                f"GET {p} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"User-Agent: bench-loadgen\r\n{extra}\r\n"
            ).encode()
            for p in paths
        ]
        self.conns: list[_Conn] = []
        self.idle: list[_Conn] = []
        self.busy: dict[int, _Conn] = {}
        self.errors = 0
        self.reconnects = 0

    def connect(self) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=5.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        self.conns.append(conn)
        return conn

    def close(self, conn: _Conn) -> None:
        self.busy.pop(conn.sock.fileno(), None)
        if conn in self.conns:
            self.conns.remove(conn)
        conn.sock.close()

    def send(self, conn: _Conn, index: int, now: int) -> None:
        conn.index, conn.sent_ns = index, now
        conn.header_end = conn.total = -1
        request = self.requests[index % len(self.requests)]
        try:
            sent = conn.sock.send(request)
        except BlockingIOError:
            sent = 0
        if sent != len(request):  # never on loopback with a tiny request; be correct anyway
            conn.sock.setblocking(True)
            conn.sock.sendall(request[sent:])
            conn.sock.setblocking(False)
        self.busy[conn.sock.fileno()] = conn

    @staticmethod
    def parse(conn: _Conn) -> tuple[int, bool, bool] | None:
        """(status, reached upstream, keep-alive) once a whole response is buffered."""
        buf = conn.buf
        if conn.header_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            conn.header_end = end
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise ValueError("response without Content-Length (not supported)")
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
            conn.total = end + 4 + length
        if len(buf) < conn.total:
            return None
        head = bytes(buf[: conn.header_end]).lower()
        status = int(head[9:12])
        reached = MARKER in head
        keep = b"\r\nconnection: close" not in head
        del buf[: conn.total]
        return status, reached, keep


def run(args: argparse.Namespace) -> dict[str, Any]:
    _tight_timers()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    gc.disable()  # no collector pauses inside the measurement (allocation is bounded)
    r = _Run(args)
    closed = args.closed > 0
    total_s = args.warmup + args.duration
    if closed:
        count = args.max_requests
        interval = 0
    else:
        count = min(int(args.rate * total_s), args.max_requests)
        interval = 1e9 / args.rate
    for _ in range(args.closed if closed else args.connections):
        r.idle.append(r.connect())
    intended = [0] * count
    sent = [0] * count
    done_at = [0] * count
    status = [0] * count
    reached = bytearray(count)
    t0 = time.monotonic_ns() + 20_000_000
    while time.monotonic_ns() < t0:
        pass
    stop_sending = t0 + int(total_s * 1e9)
    hard_deadline = stop_sending + int(args.timeout * 1e9)
    backlog: deque[int] = deque()
    next_i = 0
    finished = 0
    while finished < count:
        now = time.monotonic_ns()
        if now >= hard_deadline:
            break
        if closed:
            while r.idle and next_i < count and now < stop_sending:
                conn = r.idle.pop()
                intended[next_i] = now
                sent[next_i] = now
                r.send(conn, next_i, now)
                next_i += 1
            if next_i < count and now >= stop_sending:
                count = next_i  # closed loop: the run ends at the duration
                if finished >= count:
                    break
        else:
            while next_i < count and t0 + int(next_i * interval) <= now:
                intended[next_i] = t0 + int(next_i * interval)
                backlog.append(next_i)
                next_i += 1
            while backlog and (r.idle or len(r.conns) < r.max_connections):
                conn = r.idle.pop() if r.idle else r.connect()
                i = backlog.popleft()
                sent[i] = now
                r.send(conn, i, now)
        if closed:
            wait_ns = (stop_sending if now < stop_sending else hard_deadline) - now
        elif next_i >= count:
            wait_ns = hard_deadline - now
        else:
            wait_ns = t0 + int(next_i * interval) - now
        wait = max(0.0, wait_ns / 1e9)
        readable, _, _ = select.select(list(r.busy), [], [], wait)
        if not readable:
            continue
        now = time.monotonic_ns()
        for fd in readable:
            conn = r.busy[fd]
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                status[conn.index] = 0
                done_at[conn.index] = now
                finished += 1
                r.errors += 1
                r.close(conn)
                r.reconnects += 1
                r.idle.append(r.connect())
                continue
            conn.buf += data
            parsed = r.parse(conn)
            if parsed is None:
                continue
            code, from_upstream, keep = parsed
            i = conn.index
            status[i], reached[i], done_at[i] = code, from_upstream, now
            finished += 1
            del r.busy[fd]
            if keep:
                r.idle.append(conn)
            else:
                r.close(conn)
                r.reconnects += 1
                r.idle.append(r.connect())
    for conn in list(r.conns):
        conn.sock.close()
    warm_ns = int(args.warmup * 1e9)
    measured = [i for i in range(count) if intended[i] - t0 >= warm_ns]
    return {
        "mode": "closed" if closed else "open",
        "rate": args.rate,
        "t0_ns": t0,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "requests": count,
        "sent": next_i,
        "measured": len(measured),
        "completed": sum(1 for i in measured if done_at[i]),
        "connections": len(r.conns),
        "reconnects": r.reconnects,
        # per measured request, microseconds / offsets from t0
        "offset_us": [(intended[i] - t0) // 1000 for i in measured],
        "latency_us": [(done_at[i] - intended[i]) // 1000 if done_at[i] else -1 for i in measured],
        "service_us": [(done_at[i] - sent[i]) // 1000 if done_at[i] else -1 for i in measured],
        "send_lag_us": [(sent[i] - intended[i]) // 1000 if sent[i] else -1 for i in measured],
        "done_offset_us": [(done_at[i] - t0) // 1000 if done_at[i] else -1 for i in measured],
        "status": [status[i] for i in measured],
        "reached": [reached[i] for i in measured],
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", action="append", help="request path; several are cycled")
    p.add_argument("--header", action="append", default=[], help="'Name: value'")
    p.add_argument("--rate", type=float, default=1000.0, help="open loop: requests per second")
    p.add_argument("--closed", type=int, default=0, help="closed loop with N connections")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds sent but not reported")
    p.add_argument("--connections", type=int, default=16, help="opened up front")
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--max-requests", type=int, default=200_000, help="hard cap on requests")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait after the last")
    p.add_argument("--cpu", type=int, help="pin the generator to this CPU")
    p.add_argument("--out", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.closed <= 0 and args.rate <= 0:
        print("--rate must be positive", file=sys.stderr)
        return 2
    result = run(args)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
