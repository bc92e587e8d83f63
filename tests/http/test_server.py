"""gate.http.server: the FrontDoor listener on a real loopback socket, its clock tick and drain.

The handler is written here (it answers once a test lets it); clients are raw
asyncio streams, so what is asserted is what a client sees on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest

from gate.core.action import Answer
from gate.http.cycle import Cycle
from gate.http.server import FrontDoor
from tests.contract.conftest import RawResponse, read_response
from tests.http.fake_transport import make_door

_BOUND_S = 10.0  # a bound on waiting, never an expectation of speed
GET = b"GET /v1/x HTTP/1.1\r\nHost: gate\r\n\r\n"


class Held:
    """Answers each request with its target, once ``release`` is set (set from the start)."""

    def __init__(self, held: bool = False) -> None:
        self.release = asyncio.Event()
        if not held:
            self.release.set()
        self.arrived = asyncio.Event()

    def __call__(self, cycle: Cycle) -> Coroutine[Any, Any, None]:
        self.arrived.set()
        return self._answer(cycle)

    async def _answer(self, cycle: Cycle) -> None:
        await self.release.wait()
        cycle.answer(Answer(200, cycle.target.encode(), ((b"Content-Type", b"text/plain"),)))


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Open = Callable[..., Awaitable[tuple[FrontDoor, int]]]


@pytest.fixture
async def open_door() -> AsyncIterator[Open]:
    """Start front doors on free loopback ports; drained (grace 0) after the test."""
    doors: list[FrontDoor] = []

    async def start(handler: Held, **server: Any) -> tuple[FrontDoor, int]:
        door = make_door(handler, **server)
        doors.append(door)
        return door, await door.start("127.0.0.1", 0)

    yield start
    for door in doors:
        await door.drain(0)


async def client(port: int) -> Streams:
    return await asyncio.open_connection("127.0.0.1", port)


async def answer(reader: asyncio.StreamReader) -> RawResponse | None:
    async with asyncio.timeout(_BOUND_S):
        return await read_response(reader)


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (end of stream or reset) with nothing more sent."""
    async with asyncio.timeout(_BOUND_S):
        try:
            return await reader.read(1) == b""
        except ConnectionError:
            return True


def hang_up(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        writer.close()


async def test_the_door_listens_and_stamps_answers_with_its_date(open_door: Open) -> None:
    """start() returns the port it bound; the tick renders the Date header every answer carries."""
    door, port = await open_door(Held())
    assert port > 0
    assert door.date.startswith(b"Date: ") and door.date.endswith(b" GMT\r\n")
    reader, writer = await client(port)
    writer.write(GET)
    response = await answer(reader)
    assert response is not None and (response.status, response.body) == (200, b"/v1/x")
    assert "Date" in response.headers
    assert len(door.connections) == 1
    hang_up(writer)


async def test_the_tick_runs_every_connections_clocks(open_door: Open) -> None:
    """Once a second each connection's clock is checked: a slow head gets 408, idle ones close.

    Waits about one tick (1 s): the limits are smaller than that.
    """
    _, port = await open_door(Held(), header_timeout_s=0.05, keepalive_timeout_s=0.05)
    slow_reader, slow_writer = await client(port)
    slow_writer.write(b"GET /v1/x HTTP/1.1\r\nHost: ga")  # a head that never ends
    idle_reader, idle_writer = await client(port)
    idle_writer.write(GET)
    first = await answer(idle_reader)
    assert first is not None and first.status == 200
    silent_reader, silent_writer = await client(port)  # never sends anything
    timed_out = await answer(slow_reader)
    assert timed_out is not None and timed_out.status == 408
    assert await closed(slow_reader)
    assert await closed(idle_reader)  # keep-alive ran out: closed, no answer owed
    assert await closed(silent_reader)  # no first request within header_timeout_s
    for writer in (slow_writer, idle_writer, silent_writer):
        hang_up(writer)


async def test_drain_closes_idle_connections_and_answers_the_one_in_flight(
    open_door: Open,
) -> None:
    """Shutdown: stop accepting, close idle connections, finish the call in flight, then close."""
    held = Held(held=True)
    door, port = await open_door(held)
    idle_reader, idle_writer = await client(port)
    busy_reader, busy_writer = await client(port)
    busy_writer.write(GET)
    async with asyncio.timeout(_BOUND_S):
        await held.arrived.wait()
    draining = asyncio.ensure_future(door.drain(_BOUND_S))
    assert await closed(idle_reader)
    with pytest.raises(OSError):  # the listener is closed
        await client(port)
    assert not draining.done()  # the call in flight holds the drain
    held.release.set()
    response = await answer(busy_reader)
    assert response is not None and (response.status, response.body) == (200, b"/v1/x")
    assert response.headers.get("Connection") == "close"
    assert await closed(busy_reader)
    async with asyncio.timeout(_BOUND_S):
        await draining
    assert not door.connections and not door.tasks
    for writer in (idle_writer, busy_writer):
        hang_up(writer)


async def test_drain_cuts_what_is_still_in_flight_after_the_grace(open_door: Open) -> None:
    """A call that outlasts shutdown_grace is cut (never a short answer) and its task ended."""
    held = Held(held=True)
    door, port = await open_door(held)
    reader, writer = await client(port)
    writer.write(GET)
    async with asyncio.timeout(_BOUND_S):
        await held.arrived.wait()
        await door.drain(0.05)
    assert await closed(reader)  # no answer at all
    assert not door.tasks
    hang_up(writer)
