"""A lean HTTP/1.1 client for the one upstream: pooled keep-alive connections, llhttp parsing.

Every forwarded call crosses this code, so it does only what a reverse proxy
needs: write one pre-rendered request head, stream the body, parse the
answer with httptools (llhttp, in C) and hand the body on chunk by chunk with
flow control. It is about three times cheaper per call than aiohttp's
general-purpose ``ClientSession`` (see ``bench/proxy_bench.py``).

Failures surface as ``UpstreamClosed`` (the connection broke or the answer
was not HTTP) or ``TimeoutError``; ``gate.forward`` turns them into 502/504.
A request is re-sent only when it is idempotent, went out on a reused
connection and no byte of an answer came back (RFC 9112 §9.3.1).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import cast

import httptools
from yarl import URL

__all__ = ["UpstreamClosed", "UpstreamPool", "UpstreamResponse"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_HIGH_WATER = 256 * 1024  # buffered body bytes before the upstream socket is paused
_IDLE_S = 30.0  # a pooled connection idle longer than this is closed, not reused
_INLINE_BODY = 64 * 1024  # smaller bodies go out in the same write as the head


class UpstreamClosed(Exception):
    """The upstream connection broke, or what came back was not valid HTTP."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self.heard_at = self._loop.time()  # last sign of life, for the pool's watchdog
        self._reset()
        self._drained: asyncio.Future[None] | None = None

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_ready: asyncio.Future[UpstreamResponse] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._response: UpstreamResponse | None = None
        self._bodiless = False
        self._informational = False
        self._received_any = False
        self.done = False
        self.keep_alive = False
        self.error: BaseException | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport quacks like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._head_ready is None or self.done:
            self._fail(UpstreamClosed("the upstream sent bytes nobody asked for"))
            return
        self._received_any = True
        self.heard_at = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"the upstream's answer is not valid HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if self._head_ready is not None and not self.done:
            if response is not None and response.until_close:
                self.done = True  # a body delimited by the end of the connection
                self._wake()
            else:
                self._fail(UpstreamClosed("the upstream closed the connection"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(UpstreamClosed("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- llhttp callbacks ---------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True  # 100 Continue and kin: wait for the real answer
            self._headers, self._reason = [], b""
            return
        headers = self._headers
        response = UpstreamResponse(self, status, self._reason.decode("latin-1"), headers)
        self._response = response
        if self._bodiless:  # llhttp would wait for a HEAD body: end here, never reuse
            self.done, self.keep_alive = True, False
        if self._head_ready is not None and not self._head_ready.done():
            self._head_ready.set_result(response)

    def on_body(self, chunk: bytes) -> None:
        if self.done:
            return  # the body of a HEAD answer does not exist; llhttp cannot know that
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self.done:
            self.done = True
            self.keep_alive = self._parser.should_keep_alive()
        self._wake()

    # -- the exchange -------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if self._head_ready is not None and not self._head_ready.done():
            self._head_ready.set_exception(error)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # close() would wait to flush to a peer that may be stuck

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def begin(self, method: str) -> asyncio.Future[UpstreamResponse]:
        self._reset()
        self.heard_at = self._loop.time()
        self._bodiless = method == "HEAD"
        self._head_ready = self._loop.create_future()
        return self._head_ready

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.error or UpstreamClosed("the upstream closed the connection")
        self.transport.write(data)
        self.heard_at = self._loop.time()  # still sending: the upstream is not late yet
        if self._drained is not None:
            await self._drained

    def silent_for(self, now: float) -> float:
        """How long an unfinished exchange has heard nothing from the upstream."""
        if self._head_ready is None or self.done or self._buffered:
            return 0.0  # idle, finished, or it is our reader that is slow, not the upstream
        return now - self.heard_at

    def time_out(self) -> None:
        self._fail(TimeoutError("the upstream stayed silent for longer than read_timeout"))

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self.done:
                return None
            self._waiter = self._loop.create_future()
            await self._waiter
            self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= _HIGH_WATER // 2 and self.transport is not None:
            self.transport.resume_reading()
        return chunk

    def idle(self) -> None:
        """Between exchanges: any byte the upstream sends now is an error."""
        self._head_ready = None

    @property
    def received_any(self) -> bool:
        return self._received_any


class UpstreamResponse:
    """An answer whose head has arrived; the body is read with ``chunks()`` or ``read()``."""

    __slots__ = ("_conn", "_pool", "headers", "reason", "status", "until_close")

    def __init__(
        self, conn: _Connection, status: int, reason: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._conn = conn
        self._pool: UpstreamPool | None = None
        self.status = status
        self.reason = reason
        self.headers = headers
        framed = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers
        )
        self.until_close = not framed

    @property
    def content_length(self) -> int | None:
        for name, value in self.headers:
            if name.lower() == b"content-length":
                return int(value) if value.strip().isdigit() else None
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.next_chunk()) is not None:
            yield chunk

    async def read(self, limit: int) -> bytes:
        """The whole body; UpstreamClosed when it is longer than ``limit``."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise UpstreamClosed(f"the upstream's answer is over {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back: to the pool when the exchange ended cleanly."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.give_back(self._conn)


class UpstreamPool:
    """Keep-alive connections to one origin, at most ``limit`` at a time."""

    def __init__(
        self, url: URL, *, limit: int, connect_timeout: float, read_timeout: float
    ) -> None:
        self.host = url.raw_host or "localhost"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if url.scheme == "https" else None
        )
        default_port = url.port is None or url.is_default_port()
        self.host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._slots = asyncio.Semaphore(limit)
        self._watchdog: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        length: int | None = None,
    ) -> UpstreamResponse:
        """Send one request; the caller must ``release()`` the answer."""
        head = _render_head(method, target, self.host_header, headers, body, length)
        await self._slots.acquire()
        try:
            conn = self._checkout()
            try:
                return await self._exchange(conn, method, head, body)
            except UpstreamClosed:
                retry = (
                    conn is not None
                    and method in _IDEMPOTENT
                    and not conn.received_any
                    and not isinstance(body, AsyncIterable)
                )
                if not retry:
                    raise
            return await self._exchange(None, method, head, body)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(
        self,
        conn: _Connection | None,
        method: str,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        if conn is None:
            conn = await self._connect()
        head_ready = conn.begin(method)
        self._busy.add(conn)
        if self._watchdog is None:
            self._watch()
        try:
            await _send(conn, head, body)
            response = await head_ready
        except BaseException:
            self._busy.discard(conn)
            conn.close()
            if head_ready.done() and not head_ready.cancelled():
                head_ready.exception()  # retrieved: the error raised here says it all
            raise
        response._pool = self
        return response

    def _checkout(self) -> _Connection | None:
        """A pooled connection still open and not idle too long, or None."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < _IDLE_S:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except OSError as exc:
            raise UpstreamClosed(f"cannot connect to the upstream: {exc.strerror or exc}") from exc
        return conn

    def _watch(self) -> None:
        """Fail exchanges silent for over read_timeout; cheaper than a timer per call."""
        now = asyncio.get_running_loop().time()
        for conn in [c for c in self._busy if c.silent_for(now) > self.read_timeout]:
            conn.time_out()
        tick = min(1.0, self.read_timeout / 4)
        self._watchdog = asyncio.get_running_loop().call_later(tick, self._watch)

    def give_back(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        self._slots.release()
        if conn.done and conn.keep_alive and not conn.closed and conn.error is None:
            conn.idle_since = time.monotonic()
            conn.idle()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()


def _render_head(
    method: str,
    target: str,
    host: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes | AsyncIterable[bytes] | None,
    length: int | None,
) -> bytes:
    lines = [
        method.encode("ascii"),
        b" ",
        target.encode("utf-8", "surrogateescape"),
        b" HTTP/1.1\r\nHost: ",
        host,
        b"\r\n",
    ]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    if isinstance(body, bytes):
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
    elif body is not None:
        if length is None:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        else:
            lines += (b"Content-Length: ", str(length).encode(), b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


async def _send(conn: _Connection, head: bytes, body: bytes | AsyncIterable[bytes] | None) -> None:
    if body is None or isinstance(body, bytes):
        if body and len(body) > _INLINE_BODY:
            await conn.write(head)
            await conn.write(body)
        else:
            await conn.write(head + body if body else head)
        return
    await conn.write(head)
    chunked = head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    async for chunk in body:
        if conn.done or conn.error is not None:
            return  # the upstream answered early: stop sending, keep its answer
        if chunk:
            await conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
    if chunked:
        await conn.write(b"0\r\n\r\n")
