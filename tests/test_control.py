"""gate.control: the parent-worker channel, two real Channels over a real socketpair."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gate.control import Channel

_BOUND_S = 10.0


class Worker:
    """The far end's handler: answers ``echo``, ``slow`` when released, fails ``broken``."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> Any:
        op = message["op"]
        if op == "echo":
            return {"got": message["value"]}
        if op == "slow":
            await self.release.wait()
            return "slow"
        if op == "broken":
            raise KeyError("no such pair")
        self.notices.append(message)
        return None


async def nothing(message: dict[str, Any]) -> Any:
    return None


@pytest.fixture
async def ends() -> AsyncIterator[tuple[Channel, Channel, Worker]]:
    """The parent's end and the worker's end of one socketpair; both closed after."""
    parent_sock, worker_sock = socket.socketpair()
    worker = Worker()
    parent = await Channel.open(parent_sock, nothing)
    child = await Channel.open(worker_sock, worker)
    yield parent, child, worker
    await parent.close()
    await child.close()


async def test_a_request_gets_its_reply(ends: tuple[Channel, Channel, Worker]) -> None:
    """ask() sends a request and returns what the other side's handler returned."""
    parent, _, _ = ends
    assert await parent.ask("echo", value=[1, "a"]) == {"got": [1, "a"]}


async def test_replies_are_matched_to_requests_by_id(
    ends: tuple[Channel, Channel, Worker],
) -> None:
    """A slow request does not hold up, or take, the reply of a later one."""
    parent, _, worker = ends
    slow = asyncio.ensure_future(parent.ask("slow"))
    assert await parent.ask("echo", value=2) == {"got": 2}
    assert not slow.done()
    worker.release.set()
    async with asyncio.timeout(_BOUND_S):
        assert await slow == "slow"


async def test_a_notice_is_handled_and_needs_no_reply(
    ends: tuple[Channel, Channel, Worker],
) -> None:
    """tell() (a worker recorded a confirmation) reaches the handler; nothing comes back."""
    parent, _, worker = ends
    parent.tell("recorded", partner="p", customer="c")
    assert await parent.ask("echo", value=0) == {"got": 0}  # sent after, handled after
    assert worker.notices == [{"op": "recorded", "partner": "p", "customer": "c"}]


async def test_a_request_the_other_side_cannot_serve_fails_by_name(
    ends: tuple[Channel, Channel, Worker],
) -> None:
    """The handler's exception comes back as its kind only, and the channel goes on."""
    parent, _, _ = ends
    with pytest.raises(RuntimeError, match=r"^KeyError$"):
        await parent.ask("broken")
    assert await parent.ask("echo", value=1) == {"got": 1}


async def test_a_request_unanswered_in_time_times_out(
    ends: tuple[Channel, Channel, Worker],
) -> None:
    """ask() is bounded: a worker that does not answer does not hang the parent."""
    parent, _, worker = ends
    with pytest.raises(TimeoutError):
        await parent.ask("slow", within_s=0.01)
    worker.release.set()  # the late reply finds nobody waiting: dropped
    assert await parent.ask("echo", value=3) == {"got": 3}


async def test_the_other_end_closing_fails_waiting_requests(
    ends: tuple[Channel, Channel, Worker],
) -> None:
    """A worker that dies: its pending requests fail, ``closed`` resolves, sending refuses."""
    parent, child, _ = ends
    slow = asyncio.ensure_future(parent.ask("slow"))
    await asyncio.sleep(0)
    await child.close()
    async with asyncio.timeout(_BOUND_S):
        with pytest.raises(ConnectionError):
            await slow
        await parent.closed
    await parent.close()
    with pytest.raises(ConnectionError):
        parent.tell("recorded")


async def test_a_line_that_is_not_json_ends_the_channel() -> None:
    """Garbage from the other side is never guessed at: the channel ends."""
    parent_sock, worker_sock = socket.socketpair()
    parent = await Channel.open(parent_sock, nothing)
    worker_sock.sendall(b"{not json\n")
    async with asyncio.timeout(_BOUND_S):
        await parent.closed
    await parent.close()
    worker_sock.close()
