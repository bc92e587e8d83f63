"""gate.http.connection: one upstream Connection against real loopback servers.

The Connection is opened with ``loop.create_connection`` to a scripted
asyncio server (``RawServer`` of tests/http/test_upstream.py) and driven by
hand: ``begin``, ``write``, the answer's head and body, ``idle``. The pool
around it (``gate.http.upstream``) has its own tests.
"""

from __future__ import annotations

import asyncio

import pytest
from yarl import URL

from gate.http.connection import Connection, UpstreamClosed, UpstreamResponse, relayed_headers
from gate.http.limits import HIGH_WATER
from tests.http.test_upstream import RawServer, Script, StartRaw, raw_server

__all__ = ["raw_server"]  # the fixture, imported for pytest to find

GET = b"GET /x HTTP/1.1\r\nHost: upstream\r\n\r\n"


async def connect(url: URL) -> Connection:
    assert url.host is not None and url.port is not None
    _, conn = await asyncio.get_running_loop().create_connection(Connection, url.host, url.port)
    return conn


async def exchange(conn: Connection, request: bytes = GET, method: str = "GET") -> UpstreamResponse:
    """Send one request and wait for the answer's head, as the pool does."""
    head_ready = conn.begin(method)
    await conn.write(request)
    conn.sending = False
    return await head_ready


async def read_all(response: UpstreamResponse) -> bytes:
    parts = []
    while (chunk := await response.next_chunk()) is not None:
        parts.append(chunk)
    return b"".join(parts)


def answering(server: list[RawServer], *answers: bytes, then_close: bool = False) -> Script:
    """A script that reads one request per answer and writes the answer, in order."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await server[0].read_request(reader)
            writer.write(answer)
            await writer.drain()
        if not then_close:
            await reader.read()  # hold the connection open until the gate closes it

    return script


async def start(
    raw_server: StartRaw, *answers: bytes, then_close: bool = False
) -> tuple[RawServer, Connection]:
    """A server that gives ``answers`` in turn, and a Connection to it."""
    holder: list[RawServer] = []
    server, url = await raw_server(answering(holder, *answers, then_close=then_close))
    holder.append(server)
    return server, await connect(url)


async def test_a_keep_alive_connection_carries_one_exchange_after_another(
    raw_server: StartRaw,
) -> None:
    """Keep-alive: each answer ends the exchange cleanly and the next one reuses the socket."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server, conn = await start(raw_server, ok, ok.replace(b"ok", b"hi"))
    for expected in (b"ok", b"hi"):
        response = await exchange(conn)
        assert (response.status, response.reason) == (200, "OK")
        assert await read_all(response) == expected
        assert conn.done and conn.keep_alive and not conn.closed
        conn.idle()
    assert server.connections == 1
    assert len(server.requests) == 2
    conn.close()


async def test_a_small_answer_is_whole_once_its_head_arrives(raw_server: StartRaw) -> None:
    """Head and body in one packet: the body is there at once, headers sorted for relaying."""
    answer = (
        b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Kept: 1\r\n"
        b"Keep-Alive: timeout=5\r\nMS-RequestId: r-1\r\n\r\nhello"
    )
    _, conn = await start(raw_server, answer)
    response = await exchange(conn)
    assert (response.status, response.reason_bytes, response.content_length) == (
        201,
        b"Created",
        5,
    )
    assert response.whole() == b"hello"
    assert (b"Keep-Alive", b"timeout=5") in response.headers  # every pair as it came
    assert response.relayed == b"X-Kept: 1\r\nMS-RequestId: r-1\r\n"  # less hop-by-hop, framing
    assert not response.until_close
    conn.close()


async def test_a_chunked_answer_arrives_chunk_by_chunk(raw_server: StartRaw) -> None:
    """Transfer-Encoding: chunked is unframed for the reader; the connection stays reusable."""
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    _, conn = await start(raw_server, answer)
    response = await exchange(conn)
    assert response.content_length is None and not response.until_close
    assert b"Transfer-Encoding" not in response.relayed
    assert await read_all(response) == b"abcdefg"
    assert conn.keep_alive
    conn.close()


async def test_a_body_delimited_by_close_ends_with_the_connection(raw_server: StartRaw) -> None:
    """No framing: the body is whatever comes before an orderly close, never reused."""
    _, conn = await start(raw_server, b"HTTP/1.1 200 OK\r\n\r\nuntil the end", then_close=True)
    response = await exchange(conn)
    assert response.until_close
    assert await read_all(response) == b"until the end"
    assert conn.closed and not conn.keep_alive


async def test_an_upstream_that_closes_mid_answer_fails_the_read(raw_server: StartRaw) -> None:
    """A body cut short by the upstream is an error, never a short answer taken as whole."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some"
    _, conn = await start(raw_server, cut, then_close=True)
    response = await exchange(conn)
    with pytest.raises(UpstreamClosed):
        await read_all(response)
    assert conn.closed
    assert response.whole() is None


async def test_an_upstream_that_closes_before_answering_fails_the_head(
    raw_server: StartRaw,
) -> None:
    """No answer at all: the head's future fails, and nothing was received."""
    _, conn = await start(raw_server, b"", then_close=True)
    with pytest.raises(UpstreamClosed):
        await exchange(conn)
    assert conn.closed and not conn.received_any


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                     id="two-lengths"),
        pytest.param(b"SMTP ready\r\n\r\n", id="not-http"),
    ],
)  # fmt: skip
async def test_a_malformed_answer_fails_and_aborts_the_connection(
    raw_server: StartRaw, answer: bytes
) -> None:
    """What is not valid HTTP is an UpstreamClosed, and the connection is never reused."""
    _, conn = await start(raw_server, answer)
    with pytest.raises(UpstreamClosed, match="not valid HTTP"):
        await exchange(conn)
    assert conn.closed and conn.error is not None


async def test_bytes_between_exchanges_break_the_connection(raw_server: StartRaw) -> None:
    """An idle connection that receives bytes nobody asked for is closed, not reused."""
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b"HTTP/1.1 200 OK\r\n\r\n"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(extra[:40])
        await writer.drain()
        await asyncio.sleep(0.01)  # the first answer is read, and the connection idles
        writer.write(extra[40:])
        await reader.read()

    _, url = await raw_server(script)
    conn = await connect(url)
    response = await exchange(conn)
    assert await read_all(response) == b"ok"
    conn.idle()
    async with asyncio.timeout(5):
        while not conn.closed:  # noqa: ASYNC110 - the protocol has no event to await
            await asyncio.sleep(0.005)
    with pytest.raises(UpstreamClosed):
        await conn.write(GET)


async def test_a_head_answer_ends_at_its_headers_and_is_not_reused(raw_server: StartRaw) -> None:
    """HEAD: a Content-Length announces a body that never comes; the exchange ends at once."""
    _, conn = await start(raw_server, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
    response = await exchange(conn, b"HEAD /x HTTP/1.1\r\nHost: u\r\n\r\n", "HEAD")
    assert response.content_length == 50
    assert await read_all(response) == b""
    assert conn.done and not conn.keep_alive
    conn.close()


async def test_a_large_answer_pauses_reading_until_it_is_read(raw_server: StartRaw) -> None:
    """Flow control: beyond HIGH_WATER unread bytes the socket stops reading, and resumes."""
    size = HIGH_WATER * 4
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    _, conn = await start(raw_server, answer)
    response = await exchange(conn)
    assert conn.transport is not None
    async with asyncio.timeout(5):
        while conn.transport.is_reading():  # noqa: ASYNC110 - waits for the protocol to pause
            await asyncio.sleep(0.005)
    assert len(await read_all(response)) == size
    assert conn.transport.is_reading()
    conn.close()


async def test_silence_counts_only_while_the_upstream_owes_an_answer(
    raw_server: StartRaw,
) -> None:
    """The pool's watchdog clock: 0 while idle or sending, running once the request is out."""
    gate_open = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await gate_open.wait()
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await reader.read()

    _, url = await raw_server(script)
    conn = await connect(url)
    later = conn.heard_at + 100
    assert conn.silent_for(later) == 0.0  # idle
    head_ready = conn.begin("GET")
    await conn.write(GET)
    assert conn.silent_for(later) == 0.0  # still sending: the client's body may be slow
    conn.sending = False
    assert conn.silent_for(conn.heard_at + 100) == pytest.approx(100)
    gate_open.set()
    response = await head_ready
    assert response.status == 204
    assert conn.silent_for(later) == 0.0  # done
    conn.close()


async def test_a_silent_upstream_times_out(raw_server: StartRaw) -> None:
    """time_out() (the watchdog's verdict) fails the exchange with TimeoutError and aborts."""
    _, conn = await start(raw_server)  # answers nothing
    head_ready = conn.begin("GET")
    await conn.write(GET)
    conn.time_out()
    with pytest.raises(TimeoutError):
        await head_ready
    assert conn.closed


def test_headers_named_by_connection_are_not_relayed() -> None:
    """RFC 9110 §7.6.1: a Connection header's tokens name more hop-by-hop headers."""
    headers = [
        (b"Connection", b"X-Trace, keep-alive"),
        (b"X-Trace", b"1"),
        (b"Content-Length", b"2"),
        (b"X-Kept", b"2"),
    ]
    assert relayed_headers(headers) == [(b"X-Kept", b"2")]


class Told:
    """What an exchange started with begin_told (the pool's send_now) is told, and when."""

    def __init__(self) -> None:
        self.items: list[UpstreamResponse | BaseException] = []
        self.arrived = asyncio.Event()

    def __call__(self, result: UpstreamResponse | BaseException) -> None:
        self.items.append(result)
        self.arrived.set()

    async def first(self) -> UpstreamResponse | BaseException:
        async with asyncio.timeout(5):
            await self.arrived.wait()
        return self.items[0]


async def told_once(conn: Connection, request: bytes = GET) -> Told:
    told = Told()
    conn.begin_told("GET", told)
    await conn.write(request)
    conn.sending = False
    return told


async def test_begin_told_hands_over_the_head_with_the_body_that_came_with_it(
    raw_server: StartRaw,
) -> None:
    """send_now's path: told once, directly, after llhttp read the whole small answer."""
    _, conn = await start(raw_server, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    told = await told_once(conn)
    response = await told.first()
    assert isinstance(response, UpstreamResponse)
    assert (response.status, response.whole()) == (200, b"hello")
    await asyncio.sleep(0.05)
    assert len(told.items) == 1  # never told twice


async def test_begin_told_is_told_a_broken_answer_once(raw_server: StartRaw) -> None:
    """A head followed by garbage in the same read: told the failure, not the head."""
    _, conn = await start(raw_server, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxGARBAGE")
    told = await told_once(conn)
    assert isinstance(await told.first(), UpstreamClosed)
    await asyncio.sleep(0.05)
    assert len(told.items) == 1 and conn.closed


async def test_begin_told_is_told_the_watchdogs_timeout(raw_server: StartRaw) -> None:
    _, conn = await start(raw_server)  # answers nothing
    told = await told_once(conn)
    conn.time_out()
    assert len(told.items) == 1 and isinstance(told.items[0], TimeoutError)
    conn.time_out()  # a second verdict tells nobody again
    assert len(told.items) == 1 and conn.closed
