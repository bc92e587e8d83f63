"""gate.http.upstream against real loopback servers, well-behaved and not."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from yarl import URL

from gate.http.upstream import UpstreamClosed, UpstreamPool

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server that runs ``script`` per connection and counts connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start(self) -> URL:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return URL(f"http://127.0.0.1:{port}")

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                head += await reader.readexactly(int(line.split(b":")[1]))
        return head


StartRaw = Callable[[Script], Awaitable[tuple[RawServer, URL]]]


@pytest.fixture
async def raw_server() -> AsyncIterator[StartRaw]:
    started: list[RawServer] = []

    async def start(script: Script) -> tuple[RawServer, URL]:
        server = RawServer(script)
        started.append(server)
        return server, await server.start()

    yield start
    for server in started:
        assert server.server is not None
        server.server.close()
        await server.server.wait_closed()


def pool(url: URL, read_timeout: float = 2.0) -> UpstreamPool:
    return UpstreamPool(url, limit=4, connect_timeout=1.0, read_timeout=read_timeout)


async def test_keep_alive_connections_are_reused(raw_server: StartRaw) -> None:
    """Sequential calls share one pooled connection."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server, url = await raw_server(script)
    upstream = pool(url)
    for _ in range(3):
        response = await upstream.request("GET", "/x", b"Accept: */*\r\n")
        assert (await response.read(100)) == b"ok"
        response.release()
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Accept: */*\r\n" in server.requests[0]
    upstream.close()


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        pytest.param(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                     b"abcde", id="chunked"),
        pytest.param(b"Content-Length: 5\r\n\r\nabcde", b"abcde", id="content-length"),
        pytest.param(b"\r\n", b"", id="empty-until-close"),
        pytest.param(b"Connection: close\r\n\r\nuntil close", b"until close", id="until-close"),
    ],
)  # fmt: skip
async def test_bodies_in_every_framing(raw_server: StartRaw, answer: bytes, body: bytes) -> None:
    """Chunked, sized and close-delimited bodies all arrive whole."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + answer)
        await writer.drain()
        if b"Length" not in answer and b"chunked" not in answer:
            writer.close()

    server, url = await raw_server(script)
    response = await pool(url).request("GET", "/", b"")
    assert await response.read(1000) == body
    response.release()


async def test_interim_100_continue_is_skipped(raw_server: StartRaw) -> None:
    """A 1xx interim answer is not mistaken for the final one."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!"
        )

    server, url = await raw_server(script)
    response = await pool(url).request("POST", "/", b"", b"{}")
    assert (response.status, response.reason) == (201, "Created")
    assert await response.read(10) == b"!"
    response.release()


async def test_head_answer_ends_at_the_headers(raw_server: StartRaw) -> None:
    """A HEAD answer's Content-Length announces a body that never comes."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        await asyncio.sleep(5)

    server, url = await raw_server(script)
    response = await pool(url).request("HEAD", "/", b"")
    assert response.content_length == 1000
    assert await response.read(10) == b""
    response.release()


async def test_a_request_body_is_framed_and_sent(raw_server: StartRaw) -> None:
    """Bytes go with Content-Length; a stream of unknown length goes chunked."""
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head + await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def stream() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    _, url = await raw_server(script)
    response = await pool(url).request("PUT", "/u", b"", _Streamed(stream()))
    assert response.status == 204
    response.release()
    assert b"Transfer-Encoding: chunked\r\n" in seen[0]
    assert seen[0].endswith(b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")


async def test_garbage_answer_is_upstream_closed(raw_server: StartRaw) -> None:
    """An answer that is not HTTP fails the call instead of being relayed."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")

    server, url = await raw_server(script)
    with pytest.raises(UpstreamClosed):
        await pool(url).request("GET", "/", b"")


async def test_silence_is_a_timeout(raw_server: StartRaw) -> None:
    """No answer within read_timeout raises TimeoutError (504 upstream of here)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await asyncio.sleep(5)

    server, url = await raw_server(script)
    with pytest.raises(TimeoutError):
        await pool(url, read_timeout=0.2).request("GET", "/", b"")


async def test_refused_connection_is_upstream_closed() -> None:
    """Nobody listening: UpstreamClosed (502 upstream of here)."""
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(UpstreamClosed):
        await pool(URL(f"http://127.0.0.1:{port}")).request("GET", "/", b"")


@pytest.mark.parametrize(
    ("method", "retried"), [("GET", True), ("POST", False)], ids=["get-retried", "post-not"]
)
async def test_stale_pooled_connection_retry(
    raw_server: StartRaw, method: str, retried: bool
) -> None:
    """Only an idempotent call is re-sent after a pooled connection turns out dead."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if server.connections == 1 and len(server.requests) == 2:
            return  # the second call on the first connection: hang up without a word
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        if server.connections == 1:
            await server.read_request(reader)  # read the second call, then drop it

    server, url = await raw_server(script)
    upstream = pool(url)
    first = await upstream.request(method, "/", b"", b"")
    await first.read(10)
    first.release()
    if retried:
        second = await upstream.request(method, "/", b"", b"")
        assert second.status == 200
        second.release()
        assert server.connections == 2
    else:
        with pytest.raises(UpstreamClosed):
            await upstream.request(method, "/", b"", b"")
        assert server.connections == 1


class _Streamed:
    """A client body as the front door hands it to the pool: chunks arriving over time."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source

    async def next(self) -> bytes | None:
        return await anext(self._source, None)


async def _big_body(chunks: int, pause_s: float = 0.0) -> AsyncIterator[bytes]:
    for _ in range(chunks):
        if pause_s:
            await asyncio.sleep(pause_s)
        yield b"x" * 65536


async def test_early_answer_is_returned_and_the_connection_never_reused(
    raw_server: StartRaw,
) -> None:
    """An answer before the whole body went out stands, and that connection is retired.

    Reusing it would let the rest of the unsent body (or the next request) be
    read by the upstream as part of another call: request smuggling.
    """

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        server.requests.append(head)
        if head.startswith(b"PUT"):
            await reader.read(65536)  # a little of the body, then answer and stop reading
            writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\n\r\nno")
            await writer.drain()
            await asyncio.sleep(3)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server, url = await raw_server(script)
    upstream = pool(url)
    early = await upstream.request("PUT", "/up", b"", _Streamed(_big_body(400)), length=400 * 65536)
    assert early.status == 413
    assert await early.read(10) == b"no"
    early.release()
    after = await upstream.request("GET", "/next", b"")
    assert after.status == 200
    after.release()
    assert server.connections == 2
    upstream.close()


async def test_a_reset_cuts_a_close_delimited_body_into_an_error(raw_server: StartRaw) -> None:
    """A body delimited by the connection's end must end in an orderly close, not a reset."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\n\r\n{"items": [1,2,')
        await writer.drain()
        linger = struct.pack("ii", 1, 0)  # close with RST, not FIN
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()

    server, url = await raw_server(script)
    response = await pool(url).request("GET", "/", b"")
    with pytest.raises(UpstreamClosed):
        await response.read(1000)
    response.release()


async def test_a_slow_client_body_is_not_upstream_silence(raw_server: StartRaw) -> None:
    """read_timeout counts the upstream's silence only, not pauses in the caller's upload."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            chunk = await reader.read(65536)
            if not chunk:  # the client gave up: stop, do not spin on EOF
                return
            received += chunk
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    _, url = await raw_server(script)
    response = await pool(url, read_timeout=0.2).request(
        "POST", "/", b"", _Streamed(_big_body(3, 0.3))
    )
    assert response.status == 200
    response.release()


async def test_waiting_for_a_busy_pool_is_bounded(raw_server: StartRaw) -> None:
    """With every connection taken, a caller waits connect_timeout at most, then fails."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server, url = await raw_server(script)
    upstream = UpstreamPool(url, limit=1, connect_timeout=0.2, read_timeout=2.0)
    held = await upstream.request("GET", "/", b"")
    with pytest.raises(UpstreamClosed):
        await upstream.request("GET", "/", b"")
    held.release()
    again = await upstream.request("GET", "/", b"")
    assert again.status == 200
    again.release()


async def test_retry_false_forbids_even_an_idempotent_resend(raw_server: StartRaw) -> None:
    """Gated calls pass retry=False: a dead pooled connection fails the call, once."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await server.read_request(reader)  # the second call: read it, answer nothing

    server, url = await raw_server(script)
    upstream = pool(url)
    first = await upstream.request("PUT", "/", b"", b"{}")
    first.release()
    with pytest.raises(UpstreamClosed):
        await upstream.request("PUT", "/", b"", b"{}", retry=False)
    assert server.connections == 1


async def test_silence_after_an_early_answer_still_times_out(raw_server: StartRaw) -> None:
    """read_timeout holds after an early answer too: its body may not stall forever."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only; the body is never read
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nPartial")
        await writer.drain()
        await asyncio.sleep(5)

    _, url = await raw_server(script)
    upstream = pool(url, read_timeout=0.3)
    response = await upstream.request("POST", "/", b"", _Streamed(_big_body(40)), length=40 * 65536)
    with pytest.raises(TimeoutError):
        await response.read(1000)
    response.release()


async def test_a_slot_handed_over_as_the_wait_times_out_is_not_lost(raw_server: StartRaw) -> None:
    """A release and a waiter's timeout in one loop pass: the pool keeps its capacity.

    Each round holds the one slot, queues a second call and releases the first
    exactly when the second's wait runs out (both timers fire in the same pass,
    the release first). Whether the waiter takes the slot or gives up, a third
    call must still get one: a slot handed to a waiter that then raised was
    lost for good, and with limit=1 every later call failed.
    """

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server, url = await raw_server(script)
    wait_s = 0.02
    upstream = UpstreamPool(url, limit=1, connect_timeout=wait_s, read_timeout=2.0)
    loop = asyncio.get_running_loop()
    for _ in range(40):
        held = await upstream.request("GET", "/", b"")
        deadline = loop.time() + wait_s  # the waiter's own deadline is a few µs later
        waiting = asyncio.ensure_future(upstream.request("GET", "/", b""))
        loop.call_at(deadline, held.release)
        with contextlib.suppress(UpstreamClosed):  # giving up in time is fine, slot returned
            (await waiting).release()
        again = await upstream.request("GET", "/", b"")  # the pool still has its one slot
        assert again.status == 200
        again.release()
    upstream.close()
