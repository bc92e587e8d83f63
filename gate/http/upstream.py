"""A lean HTTP/1.1 client for the one upstream: pooled keep-alive connections, llhttp parsing.

Every forwarded call crosses this code, so it does only what a reverse proxy
needs: write one pre-rendered request head, stream the body, parse the
answer with httptools (llhttp, in C) and hand the body on chunk by chunk with
flow control. It is about three times cheaper per call than aiohttp's
general-purpose ``ClientSession`` (see ``bench/proxy_bench.py``).

Failures surface as ``UpstreamClosed`` (the connection broke or the answer
was not HTTP) or ``TimeoutError``; ``gate.http.forward`` turns them into 502/504.
A request is re-sent only when it is idempotent, went out on a reused
connection and no byte of an answer came back (RFC 9112 §9.3.1).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, cast

from yarl import URL

from gate.errors import UpstreamTimeout, UpstreamUnavailable
from gate.http.connection import (
    Connection,
    Told,
    UpstreamClosed,
    UpstreamResponse,
    relayed_headers,
)
from gate.http.limits import INLINE_SEND, INSPECT_ANSWER

__all__ = ["Fetched", "Streamed", "UpstreamClosed", "UpstreamPool", "UpstreamResponse", "fetch"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_IDLE_S = 30.0  # a pooled connection idle longer than this is closed, not reused
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class Streamed(Protocol):
    """A request body that arrives while it is sent (the client's, chunk by chunk)."""

    async def next(self) -> bytes | None:
        """The next chunk, or None at the end (a plain coroutine: mypyc compiles no async
        generators)."""


Payload = bytes | Streamed | None


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
        self._idle: list[Connection] = []
        self._busy: set[Connection] = set()
        self._free = limit  # connection slots not taken (a counter: cheaper than a Semaphore)
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._watchdog: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        target: str,
        headers: bytes,
        body: Payload = None,
        *,
        length: int | None = None,
        retry: bool = True,
        fresh: bool = False,
    ) -> UpstreamResponse:
        """Send one request; the caller must ``release()`` the answer.

        ``headers`` are rendered header lines (``Name: value\\r\\n`` each);
        ``retry=False`` forbids even the one re-send of an idempotent method;
        ``fresh`` opens a new connection rather than reuse a pooled one.
        """
        head = _render_head(method, target, self.host_header, headers, body, length)
        await self._acquire()
        try:
            conn = None if fresh else self._checkout()
            try:
                return await self._exchange(conn, method, head, body)
            except UpstreamClosed:
                retry = (
                    retry
                    and conn is not None
                    and method in _IDEMPOTENT
                    and not conn.received_any
                    and (body is None or isinstance(body, bytes))
                )
                if not retry:
                    raise
            return await self._exchange(None, method, head, body)
        except BaseException:
            self._release_slot()
            raise

    def send_now(
        self, method: str, target: str, headers: bytes, body: bytes | None, told: Told
    ) -> Connection | None:
        """Start a request (no body, or one in hand) on an idle pooled connection, not awaiting.

        None when no slot is free or no idle connection is open: then use
        ``request``. Otherwise ``told`` gets the answer's head (or the failure)
        once, and its receiver must ``release()`` the answer, or ``abandon()``
        the connection when it failed.
        """
        if self._free <= 0 or not self._idle:
            return None
        conn = self._checkout()
        if conn is None or conn.transport is None:
            return None
        self._free -= 1
        conn.begin_told(method, told)
        self._busy.add(conn)
        if self._watchdog is None:
            self._watch()
        head = _render_head(method, target, self.host_header, headers, body, None)
        conn.transport.write(head + body if body else head)
        conn.sending = False
        return conn

    def abandon(self, conn: Connection) -> None:
        """An exchange started with ``send_now`` failed: close its connection, free its slot."""
        self._busy.discard(conn)
        conn.close()
        self._release_slot()

    def retryable(self, conn: Connection, method: str) -> bool:
        """Whether a failed exchange may be sent once more (RFC 9112 §9.3.1)."""
        return method in _IDEMPOTENT and not conn.received_any

    async def _exchange(
        self,
        conn: Connection | None,
        method: str,
        head: bytes,
        body: Payload,
    ) -> UpstreamResponse:
        if conn is None:
            conn = await self._connect()
        head_ready = conn.begin(method)
        self._busy.add(conn)
        if self._watchdog is None:
            self._watch()
        try:
            await _send(conn, head, body)
        except (UpstreamClosed, OSError):
            if not _answered(head_ready):  # an answer that came early still stands
                self._busy.discard(conn)
                conn.close()
                raise
        except BaseException:
            self._busy.discard(conn)
            conn.close()
            raise
        try:
            response = await head_ready
        except BaseException:
            self._busy.discard(conn)
            conn.close()
            raise
        response.on_release = self.give_back
        return response

    async def _acquire(self) -> None:
        """A connection slot; waiting longer than connect_timeout for one is a 502."""
        if self._free > 0:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await waiter  # a released slot is handed over to us
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # a slot was handed over in the same loop pass as the timeout: ours
            raise UpstreamClosed("every upstream connection is busy") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed over as we gave up: pass it on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)

    def _release_slot(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _checkout(self) -> Connection | None:
        """A pooled connection still open and not idle too long, or None."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < _IDLE_S:
                return conn
            conn.close()
        return None

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    _new_connection,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError:
            raise UpstreamClosed("connecting to the upstream timed out") from None
        except OSError as exc:
            raise UpstreamClosed(f"cannot connect to the upstream: {exc.strerror or exc}") from exc
        return cast(Connection, protocol)

    def _watch(self) -> None:
        """Fail exchanges silent for over read_timeout; cheaper than a timer per call."""
        loop = asyncio.get_running_loop()
        tick = min(1.0, self.read_timeout / 4)
        # Armed again first: a failed call told of its timeout must not stop the watchdog.
        self._watchdog = loop.call_later(tick, self._watch)
        now = loop.time()
        for conn in [c for c in self._busy if c.silent_for(now) > self.read_timeout]:
            conn.time_out()

    def give_back(self, conn: Connection) -> None:
        self._busy.discard(conn)
        self._release_slot()
        reusable = conn.done and conn.keep_alive and not conn.sending
        if reusable and not conn.closed and conn.error is None:
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
    headers: bytes,
    body: Payload,
    length: int | None,
) -> bytes:
    if isinstance(body, bytes):
        bodiless = not body and method in _BODILESS
        framing = b"" if bodiless else b"Content-Length: %d\r\n" % len(body)
    elif body is not None:
        framing = _CHUNKED if length is None else b"Content-Length: %d\r\n" % length
    else:
        framing = b"" if method in _BODILESS else b"Content-Length: 0\r\n"
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n" % (
        method.encode("ascii"),
        target.encode("utf-8", "surrogateescape"),
        host,
        headers,
        framing,
    )


def _new_connection() -> asyncio.BaseProtocol:
    """A Connection for asyncio's factory (one by its methods: it does not subclass Protocol)."""
    return cast(asyncio.BaseProtocol, Connection())


async def _send(conn: Connection, head: bytes, body: Payload) -> None:
    """Write the request; ``conn.sending`` turns False only once every byte is out."""
    if body is None or isinstance(body, bytes):
        if body and len(body) > INLINE_SEND:
            await conn.write(head)
            if conn.answered:
                return
            await conn.write(body)
        else:
            await conn.write(head + body if body else head)
        conn.sending = False
        return
    await conn.write(head)
    chunked = head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    while (chunk := await body.next()) is not None:
        if conn.answered or conn.error is not None:
            return  # the upstream answered early: stop sending (the connection is not reused)
        if chunk:
            await conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
    if conn.answered:
        return
    if chunked:
        await conn.write(b"0\r\n\r\n")
    conn.sending = False


def _answered(head_ready: asyncio.Future[UpstreamResponse]) -> bool:
    return head_ready.done() and not head_ready.cancelled() and head_ready.exception() is None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A small upstream answer read whole (lookups, subscription reads)."""

    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


async def fetch(
    pool: UpstreamPool, target: str, headers: Mapping[str, str], limit_s: float
) -> Fetched:
    """GET a small resource for the gate's own use (never a caller's call)."""
    lines = b"".join(
        b"%s: %s\r\n" % (name.encode(), value.encode("utf-8", "surrogateescape"))
        for name, value in headers.items()
    )
    try:
        async with asyncio.timeout(limit_s):
            upstream = await pool.request("GET", target, lines)
            try:
                body = await upstream.read(INSPECT_ANSWER)
            finally:
                upstream.release()
    except TimeoutError as exc:
        raise UpstreamTimeout("The upstream did not answer in time.") from exc
    except UpstreamClosed as exc:
        raise UpstreamUnavailable("The upstream cannot be reached.") from exc
    return Fetched(upstream.status, upstream.reason, tuple(relayed_headers(upstream.headers)), body)
