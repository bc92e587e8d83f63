"""gate.http.request_body: a request body fed as it arrives and read chunk by chunk or whole.

A ``Body`` is driven directly on a real connection (``ProxyProtocol`` over the
fake client socket), as the parser feeds it and the pipeline reads it; the
100-continue tests go through the whole connection.
"""

from __future__ import annotations

import asyncio

import pytest

from gate.errors import AmbiguousBody, BodyTooLarge, GateError, RequestTimeout
from gate.http.limits import HIGH_WATER
from gate.http.request_body import Body
from tests.http.fake_transport import (
    App,
    FakeTransport,
    answers,
    connect,
    feed,
    make_door,
    post,
    settle,
)


def body_on_a_connection(expect_continue: bool = False) -> tuple[Body, FakeTransport]:
    """A body on a real connection whose client socket is fake."""
    protocol, transport = connect(make_door(App()))
    return Body(protocol, expect_continue), transport


async def test_chunks_are_read_in_order_then_the_end() -> None:
    """The pipeline reads what the parser fed, in order, then None once the body is over."""
    body, _ = body_on_a_connection()
    body.feed(b"ab")
    body.feed(b"cde")
    body.finish()
    assert [await body.next(), await body.next(), await body.next()] == [b"ab", b"cde", None]
    assert (body.size, body.buffered) == (5, 0)


async def test_a_reader_waits_for_the_next_chunk() -> None:
    """A reader with nothing to read waits (what body_timeout_s bounds) until a chunk arrives."""
    body, _ = body_on_a_connection()
    reader = asyncio.ensure_future(body.next())
    await settle()
    assert body.waiting and not reader.done()
    body.feed(b"late")
    assert await reader == b"late"
    assert not body.waiting


async def test_read_takes_the_whole_body() -> None:
    """A gated call's body is read whole, its chunks joined."""
    body, _ = body_on_a_connection()
    for chunk in (b'{"a"', b": ", b"1}"):
        body.feed(chunk)
    body.finish()
    assert await body.read(1024, 8) == b'{"a": 1}'


@pytest.mark.parametrize(
    ("fed", "length"),
    [
        pytest.param(b"", 2048, id="content-length-over-the-limit"),
        pytest.param(b"x" * 1500, None, id="chunked-past-the-limit"),
    ],
)
async def test_a_body_over_the_limit_is_too_large(fed: bytes, length: int | None) -> None:
    """A gated body over the limit is refused (413), by its Content-Length before any read."""
    body, _ = body_on_a_connection()
    body.feed(fed[:1000])
    body.feed(fed[1000:])
    body.finish()
    with pytest.raises(BodyTooLarge):
        await body.read(1024, length)


async def test_a_body_that_ends_before_its_content_length_is_ambiguous() -> None:
    """Fewer bytes than Content-Length said: the gate cannot tell what the upstream would read."""
    body, _ = body_on_a_connection()
    body.feed(b"abc")
    body.finish()
    with pytest.raises(AmbiguousBody):
        await body.read(1024, 5)


async def test_a_failure_reaches_the_waiting_reader_once() -> None:
    """A stalled or cut body fails its reader; a failure after the end changes nothing."""
    body, _ = body_on_a_connection()
    reader = asyncio.ensure_future(body.next())
    await settle()
    stalled = RequestTimeout("The request body stalled for too long.")
    body.fail(stalled)
    with pytest.raises(RequestTimeout):
        await reader
    body.fail(GateError("a second failure"))
    assert body.error is stalled
    finished, _ = body_on_a_connection()
    finished.finish()
    finished.fail(stalled)
    assert finished.error is None


@pytest.mark.parametrize("already_in", [True, False])
async def test_when_complete_tells_the_whole_body_once(already_in: bool) -> None:
    """A small body is told whole from the parser's callback: at once if it is already in."""
    body, _ = body_on_a_connection()
    told: list[bytes | BaseException] = []
    if already_in:
        body.feed(b"ab")
        body.feed(b"cd")
        body.finish()
    body.when_complete(told.append)
    if not already_in:
        assert told == []
        body.feed(b"ab")
        body.feed(b"cd")
        body.finish()
    body.finish()
    assert told == [b"abcd"]


async def test_when_complete_tells_a_failure() -> None:
    """A body that fails before it is in is told as its error, not as bytes."""
    body, _ = body_on_a_connection()
    told: list[bytes | BaseException] = []
    body.when_complete(told.append)
    body.feed(b"ab")
    stalled = RequestTimeout("The request body stalled for too long.")
    body.fail(stalled)
    assert told == [stalled]


async def test_unread_bytes_past_high_water_pause_the_client_until_read() -> None:
    """More than 256 KiB unread pause reading from the client; reading them resumes it."""
    body, transport = body_on_a_connection()
    body.feed(b"x" * HIGH_WATER)
    assert transport.reading
    body.feed(b"y")
    assert not transport.reading
    assert await body.next() == b"x" * HIGH_WATER
    assert transport.reading


async def test_100_continue_is_owed_once() -> None:
    """Expect: 100-continue is answered at most once, however often the body is asked for."""
    body, transport = body_on_a_connection(expect_continue=True)
    assert transport.written == b""
    body.send_continue()
    body.send_continue()
    assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    quiet, transport = body_on_a_connection(expect_continue=False)
    quiet.send_continue()
    assert transport.written == b""


async def test_100_continue_is_sent_when_the_body_is_read() -> None:
    """Expect: 100-continue is answered 100 once the handler reads, then the real answer."""
    protocol, transport = connect(make_door(App()))
    data = post("/v1/x", b"hello", "Expect: 100-continue")
    head, body = data[: -len(b"hello")], b"hello"
    feed(protocol, head)
    await settle()
    assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    feed(protocol, body)
    await settle()
    assert [(a.status, a.body) for a in answers(transport.written, interim=True)] == [
        (100, b""),
        (200, b"POST /v1/x|hello"),
    ]


async def test_no_100_continue_when_answered_without_the_body() -> None:
    """A handler that answers without reading owes no 100; the unread body closes the socket."""
    protocol, transport = connect(make_door(App(read_body=False)))
    data = post("/v1/x", b"hello", "Expect: 100-continue")
    feed(protocol, data[: -len(b"hello")])
    await settle()
    [answer] = answers(transport.written, interim=True)
    assert answer.status == 200
    assert answer.header(b"connection") == b"close"
    assert transport.closed
