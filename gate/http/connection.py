"""One keep-alive HTTP/1.1 connection to the upstream, parsed by httptools (llhttp, in C).

The protocol carries one exchange at a time: ``begin()`` arms it, llhttp's
callbacks fill in the answer's head and queue body chunks, and reading
pauses the socket while more than 256 KiB wait unread. Errors end the
exchange and abort the connection; ``UpstreamResponse.release()`` hands it
back to whoever lent it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httptools

from gate.http.limits import HIGH_WATER
from gate.http.vocabulary import PLAIN_TOKENS, RESPONSE_DROP

__all__ = ["Connection", "Told", "UpstreamClosed", "UpstreamResponse", "relayed_headers"]


def relayed_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An answer's headers less hop-by-hop ones, framing, and whatever Connection names."""
    tokens = [
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    ]
    drop = RESPONSE_DROP.union(tokens) if tokens else RESPONSE_DROP
    return [(name, value) for name, value in headers if name.lower() not in drop]


class UpstreamClosed(Exception):
    """The upstream connection broke, or what came back was not valid HTTP."""


Told = Callable[["UpstreamResponse | BaseException"], None]
"""Handed an exchange's answer head, or why there is none (``Connection.begin_told``)."""


class Connection:
    """One keep-alive connection; carries one exchange at a time.

    An asyncio protocol by its methods, without ``asyncio.Protocol`` as its base,
    so that it compiles to a native class (``gate.http.protocol.ProxyProtocol``).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self.heard_at = self._loop.time()  # last sign of life, for the pool's watchdog
        # One parser for the connection's life: llhttp reads keep-alive answers in turn, and
        # a connection whose answer went wrong is closed, never reused.
        self._parser = httptools.HttpResponseParser(self)
        self._reset()
        self._drained: asyncio.Future[None] | None = None

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._relayed: list[bytes] = []  # header lines to relay, as sent
        self._length: int | None = None
        self._framed = False
        self._tokens = False  # a Connection header names other headers
        self._reason = b""
        self._armed = False  # an exchange is under way (begin() until idle())
        self._head_ready: asyncio.Future[UpstreamResponse] | None = None
        self._told: Told | None = None  # begin_told's callback, until it is told once
        self._due: UpstreamResponse | None = None  # a head to tell once llhttp is done
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._response: UpstreamResponse | None = None
        self._bodiless = False
        self._informational = False
        self._received_any = False
        self.sending = False  # the request is not fully written yet
        self.answered = False  # the final answer's head has arrived
        self.done = False
        self.keep_alive = False
        self.error: BaseException | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport quacks like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._armed or self.done:
            self._fail(UpstreamClosed("the upstream sent bytes nobody asked for"))
            return
        self._received_any = True
        self.heard_at = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"the upstream's answer is not valid HTTP: {exc}"))
            return
        due = self._due
        if due is not None:  # told after this read's body bytes are in: often the whole body
            self._due = None
            self._tell(due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if self._armed and not self.done:
            if response is not None and response.until_close and exc is None:
                self.done = True  # a body delimited by the (orderly) end of the connection
                self._wake()
            else:
                self._fail(UpstreamClosed("the upstream closed the connection"))
        self._release_writer(UpstreamClosed("the upstream closed the connection"))

    def eof_received(self) -> bool | None:
        """The peer ended its side: None lets the transport close ours (asyncio's default)."""
        return None

    def pause_writing(self) -> None:
        self._drained = self._future()

    def resume_writing(self) -> None:
        self.heard_at = self._loop.time()  # the upstream read what we sent
        self._release_writer(None)

    def _release_writer(self, error: BaseException | None) -> None:
        """Wake a write() waiting for the socket to drain; it fails only if nobody answered."""
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            if error is None or self.answered:
                drained.set_result(None)
            else:
                drained.set_exception(error)

    def _future(self) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        future.add_done_callback(_consume)
        return future

    # -- llhttp callbacks ---------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep the pair, and sort it once: relayed as sent, or framing the gate redoes."""
        self._headers.append((name, value))
        lowered = name.lower()
        if lowered not in RESPONSE_DROP:
            self._relayed += (name, b": ", value, b"\r\n")
        elif lowered == b"content-length":
            self._framed = True
            self._length = int(value) if value.strip().isdigit() else None
        elif lowered == b"transfer-encoding":
            self._framed = True
        elif lowered == b"connection":
            self._tokens = self._tokens or any(
                token.strip().lower() not in PLAIN_TOKENS for token in value.split(b",")
            )

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True  # 100 Continue and kin: wait for the real answer
            self._headers, self._reason, self._relayed = [], b"", []
            self._length, self._framed, self._tokens = None, False, False
            return
        headers = self._headers
        if self._tokens:  # rare: a Connection header names headers to drop as well
            self._relayed = [b"%s: %s\r\n" % pair for pair in relayed_headers(headers)]
        response = UpstreamResponse(
            self, status, self._reason, headers, b"".join(self._relayed), self._length
        )
        response.until_close = not self._framed
        self._response = response
        self.answered = True
        self._release_writer(None)  # an early answer: stop sending, never reuse the connection
        if self._bodiless:  # llhttp would wait for a HEAD body: end here, never reuse
            self.done, self.keep_alive = True, False
        if self._told is not None:
            self._due = response
        elif self._head_ready is not None and not self._head_ready.done():
            self._head_ready.set_result(response)

    def on_body(self, chunk: bytes) -> None:
        if self.done:
            return  # the body of a HEAD answer does not exist; llhttp cannot know that
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER and self.transport is not None:
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

    def _tell(self, result: UpstreamResponse | BaseException) -> None:
        told, self._told = self._told, None
        if told is not None:
            told(result)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._due = None
        self._tell(error)
        if self._head_ready is not None and not self._head_ready.done():
            self._head_ready.set_exception(error)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self._release_writer(error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # close() would wait to flush to a peer that may be stuck

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def begin(self, method: str) -> asyncio.Future[UpstreamResponse]:
        """Arm an exchange; the future gets the answer's head (or the failure)."""
        self._start(method)
        self._head_ready = self._future()
        return self._head_ready

    def begin_told(self, method: str, told: Told) -> None:
        """Arm an exchange whose answer's head (or failure) ``told`` is handed once, directly.

        No future, no loop callback: told from ``data_received`` once llhttp has
        read what arrived with the head (usually the whole answer), or from the
        failure (broken connection, invalid answer, the watchdog's timeout).
        """
        self._start(method)
        self._told = told

    def _start(self, method: str) -> None:
        self._reset()
        self._armed = True
        self.heard_at = self._loop.time()
        self._bodiless = method == "HEAD"
        self.sending = True

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.error or UpstreamClosed("the upstream closed the connection")
        self.transport.write(data)
        self.heard_at = self._loop.time()  # still sending: the upstream is not late yet
        if self._drained is not None:
            await self._drained

    def silent_for(self, now: float) -> float:
        """How long an unfinished exchange has waited on the upstream, and only on it."""
        if not self._armed or self.done or self._buffered:
            return 0.0  # idle, finished, or it is our reader that is slow, not the upstream
        if self.sending and self._drained is None and not self.answered:
            return 0.0  # waiting for the client's next body bytes
        return now - self.heard_at

    def time_out(self) -> None:
        self._fail(TimeoutError("the upstream stayed silent for longer than read_timeout"))

    def take_all(self) -> bytes | None:
        if not self.done or self.error is not None:
            return None
        chunks, self._chunks = self._chunks, collections.deque()
        self._buffered = 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self.done:
                return None
            self._waiter = self._future()
            await self._waiter
            self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= HIGH_WATER // 2 and self.transport is not None:
            self.transport.resume_reading()
        return chunk

    def idle(self) -> None:
        """Between exchanges: any byte the upstream sends now is an error."""
        self._armed = False
        self._head_ready = None

    @property
    def received_any(self) -> bool:
        return self._received_any


class UpstreamResponse:
    """An answer whose head has arrived; the body is read with ``next_chunk()`` or ``read()``."""

    __slots__ = (
        "_conn",
        "content_length",
        "headers",
        "on_release",
        "reason_bytes",
        "relayed",
        "status",
        "until_close",
    )

    def __init__(
        self,
        conn: Connection,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        relayed: bytes = b"",
        content_length: int | None = None,
    ) -> None:
        self._conn = conn
        self.on_release: Callable[[Connection], None] | None = None
        self.status = status
        self.reason_bytes = reason
        self.headers = headers  # every pair as it came
        self.relayed = relayed  # the header lines a client gets: less hop-by-hop and framing
        self.content_length = content_length
        self.until_close = False

    @property
    def reason(self) -> str:
        return self.reason_bytes.decode("latin-1")

    def next_chunk(self) -> Awaitable[bytes | None]:
        """The next body chunk, or None at the end of the body."""
        return self._conn.next_chunk()

    def whole(self) -> bytes | None:
        """The whole body when it has all arrived already (the usual small answer), else None."""
        return self._conn.take_all()

    async def read(self, limit: int) -> bytes:
        """The whole body; UpstreamClosed when it is longer than ``limit``."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await self._conn.next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                raise UpstreamClosed(f"the upstream's answer is over {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back: to the pool when the exchange ended cleanly."""
        if self.on_release is not None:
            on_release, self.on_release = self.on_release, None
            on_release(self._conn)


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark an internal future's error as seen: the exchange reports it another way."""
    if not future.cancelled():
        future.exception()
