"""One client connection of the front door: llhttp parsing, pipelining, refusals.

``ProxyProtocol`` owns the socket: it feeds httptools' strict parser (never
the lenient flags), turns each request head into a ``Cycle``, answers
pipelined requests in order (one runs, the rest wait with reading paused),
and enforces the front door's limits: a head must be complete within
``server.header_timeout_s`` and ``server.max_header_bytes`` (a target within
``server.max_target_bytes``), a body may not stall longer than
``server.body_timeout_s``, and an idle keep-alive connection is closed after
``server.keepalive_timeout_s``. Its listener (``gate.http.server.FrontDoor``)
ticks its clocks once a second; what a request becomes is the handler's work.
The state, the clocks and flow control it moves through are its base class's
(``gate.http.flow.ConnectionState``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

import httptools

from gate.core.action import answer_error
from gate.errors import (
    GateError,
    MalformedRequest,
    RequestHeaderFieldsTooLarge,
    RequestTargetTooLong,
    RequestTimeout,
)
from gate.http.cycle import ClientGone, Cycle
from gate.http.flow import ANSWERING, BODY, CLOSED, FOR_QUEUE, HEAD, NEVER, STOPPED, ConnectionState
from gate.http.head import RequestHead
from gate.http.vocabulary import REASONS
from gate.tasks import Later, spawn

if TYPE_CHECKING:
    from gate.http.server import FrontDoor

__all__ = ["Handler", "ProxyProtocol"]

Handler = Callable[[Cycle], Later]
"""Starts a cycle: a coroutine to run as its task, or None when it is over or carries on by
callbacks. Either way the cycle ends by ``Cycle.done``."""
_SLACK = 256 * 1024  # what one read may add on top of a head that is still incomplete


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head the gate refuses."""

    def __init__(self, error: GateError) -> None:
        self.error = error


class _Closed(Exception):
    """Raised from a parser callback to stop parsing once the connection is closed."""


class ProxyProtocol(ConnectionState):
    """One client connection: parsing, pipelining and refusals, over its state and clocks.

    An asyncio protocol by its methods, not by subclassing ``asyncio.Protocol``
    (see ``ConnectionState``): its one base is native too, so it stays native."""

    def __init__(self, door: FrontDoor) -> None:
        super().__init__(door)
        self.peer = b"unknown"
        self.proto = door.proto  # X-Forwarded-Proto: this listener's scheme
        self.draining = door.draining
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[Cycle] = collections.deque()  # [0] runs, the rest wait
        self._parsing: Cycle | None = None  # the cycle whose body is arriving
        self._url: list[bytes] = []
        self._url_size = 0
        self._head: RequestHead | None = None  # the head being parsed
        self._head_size = 0
        self._pending = 0  # bytes fed while a head was incomplete (bounds llhttp's buffer)
        self._refusal: GateError | None = None  # owed once the queued calls are answered

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport quacks like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        self.door.connections.add(self)
        if self.door.draining:
            self.close()

    def data_received(self, data: bytes) -> None:
        if self._state >= STOPPED:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.error)
            elif not isinstance(refused, _Closed):  # a bug in a callback: a 500, never silence
                self.door.logger.error("internal_error", error=type(refused).__name__)
                self._refuse(GateError("The gate failed to read the request."))
        except httptools.HttpParserUpgrade:
            if self._state != CLOSED:
                self._state = STOPPED  # no protocol switch here: answer, then close
            if self._queue:
                self._queue[-1].close = True
        except httptools.HttpParserError as exc:
            self._refuse(MalformedRequest(f"The request is not valid HTTP/1.1: {_reason(exc)}."))
        else:
            if self._state == HEAD:  # llhttp holds a partial header line: bound it too
                self._pending += len(data)
                if self._pending > self.door.max_header_bytes + _SLACK:
                    self._refuse(_head_too_large(self.door.max_header_bytes))

    def connection_lost(self, exc: Exception | None) -> None:
        self._state, self._state_due = CLOSED, NEVER
        self.door.connections.discard(self)
        gone = ClientGone()
        for cycle in list(self._queue):  # failing a body may finish its cycle
            cycle.body.fail(gone)
        if self._parsing is not None:
            self._parsing.body.fail(gone)
        self._wake_writer()

    def eof_received(self) -> bool | None:
        """The peer ended its side: None lets the transport close ours (asyncio's default)."""
        return None

    # -- llhttp callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        if self._state == CLOSED:  # answered and closed while this feed went on
            raise _Closed()
        self._head = RequestHead(self.door.forwards)
        self._head_size = 0
        self._url = []
        self._url_size = 0
        self._state = HEAD
        if self._reading_paused:  # bytes already read: the client is not the one late
            self._state_due = NEVER
        else:
            self._clock(self.door.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_size += len(url)
        if self._url_size > self.door.max_target_bytes:
            limit = self.door.max_target_bytes
            raise _Refused(
                RequestTargetTooLong(
                    f"The request target is over {limit} bytes.", [{"limit": limit}]
                )
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.door.max_header_bytes:
            raise _Refused(_head_too_large(self.door.max_header_bytes))
        if self._head is not None:
            self._head.add(name, value)
        # else: a chunked body's trailer (llhttp reports it here): counted, never forwarded

    def on_headers_complete(self) -> None:
        parser = self._parser
        head = cast(RequestHead, self._head)
        self._head, self._fresh, self._pending = None, False, 0
        self._state, self._state_due = BODY, NEVER
        found = head.found
        keep_alive = parser.should_keep_alive()
        # Kept alive without a Connection (or Proxy-Connection) header: HTTP/1.1, since 1.0
        # needs "keep-alive" in one of them; the version (a string httptools formats per
        # call) is read only otherwise.
        http10 = (
            not keep_alive or "connection" in found or "proxy-connection" in found
        ) and parser.get_http_version() == "1.0"
        hosts = found.get("host", ())
        if len(hosts) > 1 or (not hosts and not http10):  # RFC 9112 §3.2
            raise _Refused(MalformedRequest("An HTTP/1.1 request needs exactly one Host header."))
        lengths = found.get("content-length")
        has_body = "transfer-encoding" in found or (
            lengths is not None and lengths[0].strip() not in ("0", "")
        )
        if has_body and parser.should_upgrade():  # llhttp would skip the body: refuse it
            raise _Refused(
                MalformedRequest(
                    "The gate does not switch protocols; send a request with a body "
                    "without an Upgrade offer."
                )
            )
        cycle = Cycle(
            self,
            parser.get_method().decode("ascii"),
            (self._url[0] if len(self._url) == 1 else b"".join(self._url)).decode("latin-1"),
            head,
            http10=http10,
            keep_alive=keep_alive and not self.draining,
            has_body=has_body,
        )
        self._parsing = cycle
        self._queue.append(cycle)
        if len(self._queue) == 1:
            self._start(cycle)
        else:
            self._pause(FOR_QUEUE)  # pipelined: hold further requests until it runs

    def on_body(self, chunk: bytes) -> None:
        if self._parsing is not None:
            self._parsing.body.feed(chunk)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.body.finish()
            self._parsing = None
        if self._state == BODY:  # (not when its answer closed the connection meanwhile)
            if self._queue:
                self._state = ANSWERING
            else:
                self._idle()

    # -- cycles ---------------------------------------------------------------

    def _start(self, cycle: Cycle) -> None:
        cycle.started = True
        try:
            work = self.door.handler(cycle)
        except Exception as exc:
            cycle.fail(exc)
            return
        cycle.carry_on(work)

    def _start_next(self) -> None:
        if self._queue and not self._queue[0].started and self._state != CLOSED:
            self._start(self._queue[0])

    def run(self, cycle: Cycle, work: Coroutine[Any, Any, None]) -> None:
        """Carry on with ``cycle`` in a task; the work ends the cycle itself (``Cycle.done``)."""
        spawn(self._run(cycle, work), "request", self.door.tasks)

    async def _run(self, cycle: Cycle, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except ClientGone:
            cycle.done()
        except Exception as exc:  # the one boundary: a bug must not leave the client hanging
            cycle.fail(exc)

    def finished(self, cycle: Cycle) -> None:
        """The answer to ``cycle`` is out: start the next pipelined request, or wait idle.

        Told by ``Cycle.done`` only, once per cycle.
        """
        if self._queue and self._queue[0] is cycle:
            self._queue.popleft()
        if self._state == CLOSED:
            return
        if cycle.close or not cycle.body.done:
            if self._refusal is not None and not self._queue:
                self._write_refusal(self._refusal)  # a later request the parser refused
            self.close()  # the client asked, or the rest of its body was never read
            return
        if self._queue:  # the next pipelined request, from the loop: no recursion per request
            self.loop.call_soon(self._start_next)
        else:
            self._resume(FOR_QUEUE)
            if self._state == ANSWERING:  # the last answer is out: the keep-alive clock starts
                self._idle()

    def _refuse(self, error: GateError) -> None:
        """Answer a request the parser refused, then close: the stream cannot be trusted."""
        if self._state == CLOSED or self.transport is None:
            return
        self._head = None
        self._state, self._state_due = STOPPED, NEVER  # parse nothing more from this connection
        # The kind and llhttp's own reason only: the request's bytes may hold a token.
        self.door.logger.info("request_refused", error=error.error_name, peer=self.peer.decode())
        if self._parsing is not None:  # a broken body: its request's one answer says so
            self._parsing.close = True  # (its reader answers the error) and nothing follows it
            self._parsing.body.fail(error)
            return
        if self._queue:  # calls are waiting: they are answered first, then this refusal
            self._queue[-1].close = True
            self._refusal = error
            return
        self._write_refusal(error)

    def _write_refusal(self, error: GateError) -> None:
        if self.transport is None:
            return
        answer = answer_error(error)
        lines = b"".join(b"%s: %s\r\n" % pair for pair in answer.headers)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n%s%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (answer.status, REASONS.get(answer.status, b""), lines, self.door.date,
               len(answer.body), answer.body)
        )  # fmt: skip
        self.close()

    def _head_late(self) -> None:
        self._refuse(RequestTimeout("The request head did not arrive in time."))

    def _body_late(self) -> None:
        if self._queue:
            self._queue[0].body.fail(RequestTimeout("The request body stalled for too long."))

    def shutdown(self) -> None:
        """Draining: close when idle, else after the answer in progress."""
        self.draining = True
        for cycle in self._queue:
            cycle.close = True
        if not self._queue and self._state != HEAD:
            self.close()


def _head_too_large(limit: int) -> RequestHeaderFieldsTooLarge:
    return RequestHeaderFieldsTooLarge(
        f"The request head is over {limit} bytes.", [{"limit": limit}]
    )


def _reason(exc: httptools.HttpParserError) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.rstrip(".")[:120]
