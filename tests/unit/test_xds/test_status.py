"""XdsStatus: the awaitable ACK primitive and per-resource truth."""

from __future__ import annotations

import asyncio

from control_plane.xds.resources import CLUSTER, LISTENER
from control_plane.xds.status import XdsStatus, refused_names


async def test_wait_acked_wakes_on_the_ack_without_polling() -> None:
    status = XdsStatus()
    status.stream_opened("n", "delta")
    status.record_sent("n", CLUSTER, "v2", "nonce-1")
    waiter = asyncio.create_task(status.wait_acked("n", CLUSTER, "v2", timeout_s=5))
    await asyncio.sleep(0)
    assert not waiter.done()
    status.record_ack("n", CLUSTER, "v2")
    assert await asyncio.wait_for(waiter, 1) == "acked"


async def test_wait_acked_outcomes() -> None:
    status = XdsStatus()
    assert await status.wait_acked("absent", CLUSTER, "v1", timeout_s=5) == "disconnected"
    status.stream_opened("n", "sotw")
    status.record_sent("n", LISTENER, "v1", "nonce-1")
    assert await status.wait_acked("n", LISTENER, "v1", timeout_s=0.05) == "timeout"
    waiter = asyncio.create_task(status.wait_acked("n", LISTENER, "v1", timeout_s=5))
    await asyncio.sleep(0)
    status.record_nack("n", LISTENER, "v1", "nonce-1", "cannot bind", 13)
    assert await waiter == "nacked"
    waiter = asyncio.create_task(status.wait_acked("n", LISTENER, "v2", timeout_s=5))
    await asyncio.sleep(0)
    assert not waiter.done()  # v1 was refused; v2 is not answered yet
    status.stream_closed("n")
    assert await waiter == "disconnected"


def test_a_later_ack_does_not_clear_an_earlier_refusal() -> None:
    status = XdsStatus()
    status.stream_opened("n", "delta")
    status.record_resources_acked("n", LISTENER, {"a": "1"})
    message = "Error adding/updating listener(s) clash: cannot bind '127.0.0.1:1'"
    status.record_resources_nacked("n", LISTENER, {"clash": "7"}, "x", message, 13)
    status.record_resources_acked("n", LISTENER, {"later": "3"})  # a later response ACKed
    node = status.get("n")
    assert node is not None
    listeners = node.type(LISTENER)
    assert listeners.resource_state("clash", "7") == "nacked"
    assert listeners.resource_state("later", "3") == "acked"
    assert listeners.resource_state("a", "1") == "acked"
    assert listeners.resource_state("a", "2") == "pending"  # a new version, not answered
    status.record_resources_acked("n", LISTENER, {}, removed=["clash"])
    assert listeners.resource_state("clash", "7") == "pending"


def test_a_nack_refuses_only_the_resources_it_names() -> None:
    message = "Error adding/updating listener(s) clash: cannot bind"
    assert refused_names(["clash", "later", "clash-2"], message) == {"clash"}
    assert refused_names(["a", "b"], "some error naming nothing") == {"a", "b"}
    status = XdsStatus()
    status.record_resources_nacked("n", LISTENER, {"clash": "1", "later": "2"}, "x", message, 1)
    node = status.get("n")
    assert node is not None
    assert node.type(LISTENER).resource_state("later", "2") == "acked"
    assert node.type(LISTENER).resource_state("clash", "1") == "nacked"
