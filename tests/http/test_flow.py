"""gate.http.flow: a connection's clocks and flow control, driven through a fake client socket.

The real ``ProxyProtocol`` (a ``ConnectionState``) and ``FrontDoor`` run
under small handlers; the clocks are ticked by hand with times past their
limits (``tick(now)``), never waited for. These pin which clock runs in which
state, what each does when it runs out, and when reading pauses and resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from gate.core.action import Answer, answer_error
from gate.errors import GateError
from gate.http.cycle import ClientGone, Cycle
from gate.http.protocol import ProxyProtocol
from tests.http.fake_transport import (
    App,
    FakeTransport,
    answers,
    connect,
    error_name,
    feed,
    get,
    make_door,
    post,
    settle,
)


async def test_idle_keep_alive_connection_is_closed_by_the_clock() -> None:
    """After keepalive_timeout_s with nothing asked, the connection closes without a word."""
    door = make_door(App(), keepalive_timeout_s=5)
    protocol, transport = connect(door)
    feed(protocol, get("/v1/a"))
    await settle()
    now = door.loop.time()
    protocol.tick(now + 4)
    assert not transport.closed
    protocol.tick(now + 6)
    assert transport.closed
    assert len(answers(transport.written)) == 1  # no answer for what was never asked


async def test_a_large_unread_body_pauses_reading_until_it_is_read() -> None:
    """Flow control: past 256 KiB of unread body, reading pauses; reading the body resumes it."""
    hold = asyncio.Event()
    protocol, transport = connect(make_door(App(hold=hold)))
    body = b"x" * (300 * 1024)
    feed(protocol, post("/v1/big", body), step=64 * 1024)
    await settle()
    assert not transport.reading
    hold.set()
    await settle()
    [answer] = answers(transport.written)
    assert answer.body == b"POST /v1/big|" + body
    assert transport.reading


async def test_a_slow_head_is_408_by_the_clock() -> None:
    """server.header_timeout_s: a head still incomplete after it is answered 408, then closed."""
    door = make_door(App(), header_timeout_s=10)
    protocol, transport = connect(door)
    feed(protocol, b"GET /v1/a HTTP/1.1\r\nHost: ga")
    protocol.tick(door.loop.time() + 11)
    [answer] = answers(transport.written)
    assert answer.status == 408
    assert transport.closed


async def test_a_stalled_body_is_one_408_from_its_reader() -> None:
    """server.body_timeout_s: a body that stalls fails its reader, whose 408 is the one answer."""
    door = make_door(App(), body_timeout_s=5)
    protocol, transport = connect(door)
    feed(protocol, post("/v1/x", b"0123456789")[:-5])
    await settle()
    protocol.tick(door.loop.time() + 6)
    await settle()
    [answer] = answers(transport.written)
    assert answer.status == 408
    assert transport.closed


def whole_body(cycle: Cycle) -> Coroutine[Any, Any, None] | None:
    """A handler taking a small body whole from the parser's callback (no reader task)."""

    def step(raw: bytes | GateError | ClientGone) -> None:
        if isinstance(raw, GateError):
            cycle.answer(answer_error(raw))
        elif isinstance(raw, bytes):
            cycle.answer(Answer(200, raw, ()))
        else:
            cycle.done()

    return cycle.body_then(1024, step)


@pytest.mark.parametrize("reader", ["streamed", "whole"])
async def test_a_body_reader_stalled_past_body_timeout_gets_408(reader: str) -> None:
    """server.body_timeout_s bounds a reader waiting for body bytes, by task or by callback."""
    door = make_door(App() if reader == "streamed" else whole_body, body_timeout_s=5)
    protocol, transport = connect(door)
    feed(protocol, post("/v1/x", b"0123456789")[:-5])
    await settle()
    now = door.loop.time()
    protocol.tick(now + 4)
    await settle()
    assert transport.written == b""
    assert protocol.state == "body"
    protocol.tick(now + 6)
    await settle()
    [answer] = answers(transport.written)
    assert answer.status == 408
    assert error_name(answer) == "RequestTimeout"
    assert transport.closed


async def stream_answer(cycle: Cycle) -> None:
    """A handler streaming its answer in two pieces, waiting on the client between them."""
    chunked = cycle.respond(200, b"OK", b"", length=None)
    await cycle.write(b"first", chunked)
    await cycle.write(b"second", chunked)
    cycle.end(chunked)
    cycle.done()


def full_after_head(protocol: list[ProxyProtocol]) -> FakeTransport:
    """A client socket whose buffer fills with the answer's head (asyncio's pause_writing)."""

    def on_write(data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 200"):
            protocol[0].pause_writing()

    return FakeTransport(on_write)


async def test_a_client_not_reading_its_answer_is_cut_after_body_timeout() -> None:
    """server.body_timeout_s also bounds a client that stops reading: its answer is cut."""
    door = make_door(stream_answer, body_timeout_s=5)
    holder: list[ProxyProtocol] = []
    protocol, transport = connect(door, full_after_head(holder))
    holder.append(protocol)
    feed(protocol, get("/v1/a"))
    await settle()
    now = door.loop.time()
    protocol.tick(now + 4)
    assert not transport.closed
    protocol.tick(now + 6)
    await settle()
    assert transport.aborted  # cut, never a short answer that looks whole
    assert b"second" not in transport.written
    assert not door.tasks  # the writer heard ClientGone and ended


async def test_a_client_that_reads_again_in_time_is_not_cut() -> None:
    """The write clock stops when the client reads again (resume_writing)."""
    door = make_door(stream_answer, body_timeout_s=5, keepalive_timeout_s=60)
    holder: list[ProxyProtocol] = []
    protocol, transport = connect(door, full_after_head(holder))
    holder.append(protocol)
    feed(protocol, get("/v1/a"))
    await settle()
    now = door.loop.time()
    protocol.tick(now + 4)
    protocol.resume_writing()
    await settle()
    protocol.tick(now + 30)
    [answer] = answers(transport.written)
    assert answer.body == b"firstsecond"
    assert not transport.closed
    assert protocol.state == "idle"


async def test_the_keep_alive_clock_starts_when_the_last_queued_answer_is_out() -> None:
    """server.keepalive_timeout_s counts from the last answer, not while answers are owed."""
    hold = asyncio.Event()
    door = make_door(App(hold=hold), keepalive_timeout_s=5)
    protocol, transport = connect(door)
    feed(protocol, get("/v1/1") + get("/v1/2"))
    await settle()
    assert protocol.state == "answering"
    protocol.tick(door.loop.time() + 60)  # long past keepalive_timeout_s: answers are owed
    assert not transport.closed
    hold.set()
    await settle()
    assert len(answers(transport.written)) == 2
    assert protocol.state == "idle"
    out = door.loop.time()
    protocol.tick(out + 4)
    assert not transport.closed
    protocol.tick(out + 6)
    assert transport.closed
    assert len(answers(transport.written)) == 2


async def test_the_head_clock_does_not_run_while_the_gate_paused_reading() -> None:
    """server.header_timeout_s times the client: a head held back by the gate is not late."""
    hold = asyncio.Event()
    door = make_door(App(hold=hold), header_timeout_s=10)
    protocol, transport = connect(door)
    feed(protocol, get("/v1/1") + get("/v1/2") + b"GET /v1/3 HTTP/1.1\r\nHo")
    await settle()
    assert not transport.reading  # the gate paused: a pipelined request waits its turn
    assert protocol.state == "head"
    now = door.loop.time()
    protocol.tick(now + 60)
    assert transport.written == b""
    assert not transport.closed
    hold.set()
    await settle()
    assert transport.reading  # both answered: reading again, and the head clock runs again
    assert [a.status for a in answers(transport.written)] == [200, 200]
    protocol.tick(now + 60 + 11)
    assert [a.status for a in answers(transport.written)] == [200, 200, 408]
    assert transport.closed


async def test_the_state_names_what_the_connection_waits_for() -> None:
    """The connection's state: idle, head, body, answering, idle again, then closed."""
    hold = asyncio.Event()
    protocol, transport = connect(make_door(App(hold=hold)))
    assert protocol.state == "idle"
    data = post("/v1/x", b"0123456789")
    feed(protocol, data[:10])
    assert protocol.state == "head"
    feed(protocol, data[10:-3])
    assert protocol.state == "body"
    feed(protocol, data[-3:])
    assert protocol.state == "answering"
    hold.set()
    await settle()
    assert protocol.state == "idle"
    protocol.close()
    assert protocol.state == "closed"
    assert protocol.closed and transport.closed
