"""One client connection of the front door: llhttp parsing, pipelining, flow control, clocks.

``ProxyProtocol`` owns the socket: it feeds httptools' strict parser (never
the lenient flags), turns each request head into a ``Cycle``, answers
pipelined requests in order (one runs, the rest wait with reading paused),
and enforces the front door's limits: a head must be complete within
``server.header_timeout_s`` and ``server.max_header_bytes`` (a target within
``server.max_target_bytes``), a body may not stall longer than
``server.body_timeout_s``, and an idle keep-alive connection is closed after
``server.keepalive_timeout_s``. Its listener (``gate.http.server.FrontDoor``)
ticks its clocks once a second; what a request becomes is the handler's work.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

import httptools

from gate.core.action import Answer, answer_error
from gate.errors import (
    GateError,
    MalformedRequest,
    RequestHeaderFieldsTooLarge,
    RequestTargetTooLong,
    RequestTimeout,
)
from gate.http.cycle import ClientGone, Cycle, RequestHead

if TYPE_CHECKING:
    from gate.http.server import FrontDoor

__all__ = ["BodyStep", "Handler", "ProxyProtocol"]

Handler = Callable[[Cycle], Coroutine[Any, Any, None] | None]
"""Starts a cycle: a coroutine to run as its task, or None when it carries on by callbacks
(and then calls ``ProxyProtocol.finished`` itself)."""
BodyStep = Callable[[bytes | GateError | ClientGone], Coroutine[Any, Any, None] | None]
"""Carries a cycle on with its whole body (or why it is missing); see ``after_body``."""
_SLACK = 256 * 1024  # what one read may add on top of a head that is still incomplete


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head the gate refuses."""

    def __init__(self, error: GateError) -> None:
        self.error = error


class ProxyProtocol(asyncio.Protocol):
    """One client connection: parsing, pipelining, flow control and the client-side clocks."""

    def __init__(self, door: FrontDoor) -> None:
        self.door = door
        self.loop = door.loop
        self.transport: asyncio.Transport | None = None
        self.peer = b"unknown"
        self.proto = door.proto  # X-Forwarded-Proto: this listener's scheme
        self.closed = False
        self.draining = door.draining
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[Cycle] = collections.deque()  # [0] runs, the rest wait
        self._parsing: Cycle | None = None  # the cycle whose body is arriving
        self._url: list[bytes] = []
        self._url_size = 0
        self._head: RequestHead | None = None  # the head being parsed
        self._head_size = 0
        self._pending = 0  # bytes fed while a head was incomplete (bounds llhttp's buffer)
        self._head_since: float | None = None  # a head is arriving since then
        self._idle_since: float | None = door.loop.time()  # nothing to do since then
        self._fresh = True  # no request yet: the first must arrive within header_timeout_s
        self._body_wait_since: float | None = None
        self._write_paused_since: float | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused_for_body = False
        self._paused_for_queue = False
        self._reading_paused = False
        self._upgraded = False
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
        if self.closed or self._upgraded:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.error)
            else:  # a bug in a callback: answered 500, never a silent drop
                self.door.logger.error("internal_error", error=type(refused).__name__)
                self._refuse(GateError("The gate failed to read the request."))
        except httptools.HttpParserUpgrade:
            self._upgraded = True  # no protocol switch here: answer, then close
            if self._queue:
                self._queue[-1].close = True
        except httptools.HttpParserError as exc:
            self._refuse(MalformedRequest(f"The request is not valid HTTP/1.1: {_reason(exc)}."))
        else:
            if self._head is not None:  # llhttp holds a partial header line: bound it too
                self._pending += len(data)
                if self._pending > self.door.max_header_bytes + _SLACK:
                    self._refuse(_head_too_large(self.door.max_header_bytes))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.door.connections.discard(self)
        gone = ClientGone()
        for cycle in list(self._queue):  # failing a body may finish its cycle
            cycle.body.fail(gone)
        if self._parsing is not None:
            self._parsing.body.fail(gone)
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self.loop.create_future()
            self._write_paused_since = self.loop.time()

    def resume_writing(self) -> None:
        self._write_paused_since = None
        self._wake_writer()

    def _wake_writer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- llhttp callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        self._head = RequestHead()
        self._head_size = 0
        self._url = []
        self._url_size = 0
        self._head_since = self.loop.time()
        self._idle_since = None

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
        self._head, self._head_since, self._fresh, self._pending = None, None, False, 0
        found = head.found
        http10 = parser.get_http_version() == "1.0"
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
            keep_alive=parser.should_keep_alive() and not self.draining,
            has_body=has_body,
        )
        self._parsing = cycle
        self._queue.append(cycle)
        if len(self._queue) == 1:
            self._start(cycle)
        else:
            self._paused_for_queue = True  # pipelined: hold further requests until it runs
            self._flow()

    def on_body(self, chunk: bytes) -> None:
        if self._parsing is not None:
            self._parsing.body.feed(chunk)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.body.finish()
            self._parsing = None
        if not self._queue:
            self._idle_since = self.loop.time()

    # -- cycles ---------------------------------------------------------------

    def _start(self, cycle: Cycle) -> None:
        cycle.started = True
        try:
            work = self.door.handler(cycle)
        except Exception as exc:
            self.fail(cycle, exc)
            return
        if work is not None:
            self.run(cycle, work)

    def _start_next(self) -> None:
        if self._queue and not self._queue[0].started and not self.closed:
            self._start(self._queue[0])

    def after_body(self, cycle: Cycle, step: BodyStep) -> None:
        """Call ``step`` once the whole body is in (or has failed), without a task.

        For a small body both front doors decide from: what ``step`` cannot finish
        at once it returns as a coroutine, which then runs as the cycle's task.
        """

        def told(raw: bytes | BaseException) -> None:
            try:
                if not isinstance(raw, bytes | GateError | ClientGone):
                    raw = GateError("The request body could not be read.")
                work = step(raw)
                if work is not None:
                    self.run(cycle, work)
            except Exception as exc:  # a bug: the connection must not be left hanging
                self.fail(cycle, exc)

        cycle.body.when_complete(told)

    def run(self, cycle: Cycle, work: Coroutine[Any, Any, Any]) -> None:
        """Carry on with ``cycle`` in a task; ``finished`` is called when it ends."""
        task = self.loop.create_task(self._run(cycle, work))
        self.door.tasks.add(task)
        task.add_done_callback(self.door.tasks.discard)

    async def _run(self, cycle: Cycle, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except ClientGone:
            pass
        except Exception as exc:  # the one boundary: a bug must not leave the client hanging
            self.fail(cycle, exc)
            return
        self.finished(cycle)

    def fail(self, cycle: Cycle, exc: BaseException) -> None:
        """A bug while handling ``cycle``: a 500 if nothing was sent yet; the connection ends."""
        self.door.logger.error("internal_error", error=type(exc).__name__)
        cycle.close = True
        if not cycle.sent and not self.closed:
            self.send(cycle, answer_error(GateError("The gate failed to handle the call.")))
        else:
            self.abort()
        self.finished(cycle)

    def finished(self, cycle: Cycle) -> None:
        """The answer to ``cycle`` is out: start the next pipelined request, or wait idle."""
        if self._queue and self._queue[0] is cycle:
            self._queue.popleft()
        if self.closed:
            return
        if cycle.close or not cycle.body.done:
            if self._refusal is not None and not self._queue:
                self._write_refusal(self._refusal)  # a later request the parser refused
            self.close()  # the client asked, or the rest of its body was never read
            return
        if self._queue:  # the next pipelined request, from the loop: no recursion per request
            self.loop.call_soon(self._start_next)
        else:
            self._paused_for_queue = False
            self._flow()
            if self._parsing is None and self._head is None:
                self._idle_since = self.loop.time()

    def send(self, cycle: Cycle, answer: Answer) -> None:
        """Write one whole answer the gate gives itself."""
        lines = b"".join(b"%s: %s\r\n" % pair for pair in answer.headers)
        if answer.own:  # the gate's own answer (a relayed one keeps its Date)
            lines += self.door.date
        reason = answer.reason.encode("latin-1") if answer.reason else _REASONS.get(answer.status)
        cycle.respond(
            answer.status, reason or b"", lines, length=len(answer.body),
            body=answer.body if cycle.method != "HEAD" else b"",
        )  # fmt: skip

    def _refuse(self, error: GateError) -> None:
        """Answer a request the parser refused, then close: the stream cannot be trusted."""
        if self.closed or self.transport is None:
            return
        self._head = self._head_since = None
        self._upgraded = True  # parse nothing more from this connection
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
            % (
                answer.status,
                _REASONS.get(answer.status, b""),
                lines,
                self.door.date,
                len(answer.body),
                answer.body,
            )
        )
        self.close()

    # -- flow control ---------------------------------------------------------

    def pause_body(self) -> None:
        self._paused_for_body = True
        self._flow()

    def resume_body(self) -> None:
        if self._paused_for_body:
            self._paused_for_body = False
            self._flow()

    def body_waiting(self, waiting: bool) -> None:
        self._body_wait_since = self.loop.time() if waiting else None

    def _flow(self) -> None:
        paused = self._paused_for_body or self._paused_for_queue
        if paused != self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ClientGone()
        if self._drained is not None:
            await self._drained
            if self.closed:
                raise ClientGone()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection: the client must see a broken answer, never a short one."""
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    # -- clocks -----------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Once a second: enforce the head, body, write and keep-alive limits."""
        door = self.door
        if self._head_since is not None:
            if self._reading_paused:  # the gate holds the head back, not the client
                self._head_since = now
            elif now - self._head_since > door.header_timeout:
                self._refuse(RequestTimeout("The request head did not arrive in time."))
        elif self._idle_since is not None and not self._queue:
            limit = door.header_timeout if self._fresh else door.keepalive_timeout
            if now - self._idle_since > limit or self.draining:
                self.close()  # nothing was asked: no answer is owed
        if self._body_wait_since is not None and now - self._body_wait_since > door.body_timeout:
            body = self._queue[0].body if self._queue else None
            if body is not None:
                body.fail(RequestTimeout("The request body stalled for too long."))
        paused = self._write_paused_since
        if paused is not None and now - paused > door.body_timeout:
            self.abort()  # the client stopped reading its answer

    def shutdown(self) -> None:
        """Draining: close when idle, else after the answer in progress."""
        self.draining = True
        for cycle in self._queue:
            cycle.close = True
        if not self._queue and self._head is None:
            self.close()


def _head_too_large(limit: int) -> RequestHeaderFieldsTooLarge:
    return RequestHeaderFieldsTooLarge(
        f"The request head is over {limit} bytes.", [{"limit": limit}]
    )


def _reason(exc: httptools.HttpParserError) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.rstrip(".")[:120]


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
