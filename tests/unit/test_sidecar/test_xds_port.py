"""``xds_port: 0``: the port bound is remembered and bound again by the next run if free."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.sidecar.xds_port import PORT_FILE, bind_xds

HOST = "127.0.0.1"


class FakeServe:
    """``serve(port)``: binds a real listening socket (port 0: the kernel picks), as gRPC."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.sockets: list[socket.socket] = []
        self.refuse: set[int] = set()

    async def __call__(self, port: int) -> tuple[str, int]:
        self.asked.append(port)
        if port in self.refuse:
            raise RuntimeError(f"Failed to bind to address {HOST}:{port}")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen()
        self.sockets.append(sock)
        return "server", sock.getsockname()[1]

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


@pytest.fixture
def serve() -> Iterator[FakeServe]:
    fake = FakeServe()
    yield fake
    fake.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_fixed_port_is_used_as_is_and_not_remembered(
    tmp_path: Path, serve: FakeServe
) -> None:
    port = _free_port()
    assert await bind_xds(port, tmp_path, HOST, serve) == ("server", port)
    assert serve.asked == [port]
    assert not (tmp_path / PORT_FILE).exists()


async def test_port_zero_is_remembered_and_bound_again(
    tmp_path: Path, serve: FakeServe, caplog: pytest.LogCaptureFixture
) -> None:
    _, first = await bind_xds(0, tmp_path, HOST, serve)
    assert serve.asked == [0]
    assert (tmp_path / PORT_FILE).read_text().strip() == str(first)
    serve.stop()  # the first run is gone (crashed)

    with caplog.at_level(logging.INFO, logger="control_plane.sidecar.xds_port"):
        _, second = await bind_xds(0, tmp_path, HOST, serve)
    assert second == first
    assert serve.asked == [0, first]
    assert "re-bound the previous run's xDS port" in caplog.text


async def test_a_taken_port_falls_back_to_a_new_one(
    tmp_path: Path, serve: FakeServe, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as holder:
        # Another process holds it, with SO_REUSEPORT as a gRPC server would: a bind with it
        # too would share the port, so the probe binds without.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((HOST, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        (tmp_path / PORT_FILE).write_text(f"{taken}\n")
        with caplog.at_level(logging.WARNING, logger="control_plane.sidecar.xds_port"):
            _, port = await bind_xds(0, tmp_path, HOST, serve)
    assert port != taken
    assert serve.asked == [0]
    assert (tmp_path / PORT_FILE).read_text().strip() == str(port)
    assert "taken" in caplog.text and "replaced, not adopted" in caplog.text


async def test_a_bind_that_fails_after_the_probe_falls_back(
    tmp_path: Path, serve: FakeServe
) -> None:
    previous = _free_port()
    (tmp_path / PORT_FILE).write_text(f"{previous}\n")
    serve.refuse.add(previous)
    _, port = await bind_xds(0, tmp_path, HOST, serve)
    assert serve.asked == [previous, 0]
    assert port != previous
    assert (tmp_path / PORT_FILE).read_text().strip() == str(port)


@pytest.mark.parametrize("content", ["", "junk", "0", "70000", "-5"])
async def test_an_unusable_file_means_a_new_port(
    tmp_path: Path, serve: FakeServe, content: str
) -> None:
    (tmp_path / PORT_FILE).write_text(content)
    _, port = await bind_xds(0, tmp_path, HOST, serve)
    assert serve.asked == [0]
    assert (tmp_path / PORT_FILE).read_text().strip() == str(port)
