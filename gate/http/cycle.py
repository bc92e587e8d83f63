"""One request on a client connection and its one answer: started, carried on, written, ended.

The protocol (``gate.http.protocol``) makes a ``Cycle`` once llhttp has the
whole head (``gate.http.head``) and feeds its body (``gate.http.request_body``);
the pipeline carries it on (``Cycle.body_then``, ``Cycle.carry_on``) and writes
one answer, waiting whenever the client's socket buffer is full. ``Cycle.done``
is the one way a request ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gate.core.action import Answer, answer_error
from gate.errors import GateError
from gate.http.head import RequestHead
from gate.http.limits import WHOLE_BODY
from gate.http.request_body import Body
from gate.http.vocabulary import REASONS
from gate.tasks import Later, then

if TYPE_CHECKING:
    from gate.http.protocol import ProxyProtocol

__all__ = ["BodyStep", "ClientGone", "Cycle"]


class ClientGone(Exception):
    """The client closed its connection before the call was over."""


BodyStep = Callable[[bytes | GateError | ClientGone], Later]
"""Carries a cycle on with its whole body (or why it is missing); see ``Cycle.body_then``."""


class Cycle:
    """One request and its one answer."""

    __slots__ = (
        "body",
        "close",
        "conn",
        "ended",
        "has_body",
        "head",
        "http10",
        "length",
        "method",
        "sent",
        "started",
        "status",
        "target",
    )

    def __init__(
        self,
        conn: ProxyProtocol,
        method: str,
        target: str,
        head: RequestHead,
        *,
        http10: bool,
        keep_alive: bool,
        has_body: bool,
    ) -> None:
        self.conn = conn
        self.method = method
        self.target = target
        self.head = head
        self.http10 = http10
        self.close = not keep_alive  # close the connection after this answer
        expect = head.found.get("expect")
        continue_owed = not http10 and expect is not None and "100-continue" in expect[0].lower()
        self.body = Body(conn, continue_owed)
        self.has_body = has_body  # a Content-Length above 0, or chunked
        if not has_body:
            self.body.done = True
        lengths = head.found.get("content-length")
        self.length = (
            int(lengths[0]) if lengths and not head.found.get("transfer-encoding") else None
        )
        self.sent = False  # the status line is out: a failure can only cut the connection
        self.started = False
        self.ended = False
        self.status = 0

    @property
    def gone(self) -> bool:
        return self.conn.closed

    @property
    def peer(self) -> bytes:
        """The client's address (X-Forwarded-For)."""
        return self.conn.peer

    @property
    def proto(self) -> bytes:
        """The scheme the client spoke to the gate (X-Forwarded-Proto)."""
        return self.conn.proto

    # -- ending -----------------------------------------------------------------

    def done(self) -> None:
        """The request is over (answered, or nothing more will be): tell the connection, once.

        The one way a request ends; the connection then starts the next
        pipelined request, waits idle, or closes. Calling it again does nothing.
        """
        if not self.ended:
            self.ended = True
            self.conn.finished(self)

    def answer(self, answer: Answer) -> None:
        """Write one whole answer the gate gives itself, and end the request."""
        self.send(answer)
        self.done()

    def answer_bare(self, status: int, lines: bytes) -> None:
        """Write a bodiless answer of the gate's own (``lines``: its header lines), and end.

        ``answer`` without an ``Answer`` to build and take apart: the decision service's allow.
        """
        self.respond(status, REASONS.get(status, b""), lines + self.conn.door.date, length=0)
        self.done()

    def fail(self, exc: BaseException) -> None:
        """A bug while handling this request: a 500 if nothing was sent yet, then close."""
        self.conn.door.logger.error("internal_error", error=type(exc).__name__)
        self.close = True
        if not self.sent and not self.conn.closed:
            self.send(answer_error(GateError("The gate failed to handle the call.")))
        else:
            self.conn.abort()
        self.done()

    def abort(self) -> None:
        """Cut the connection: the client must see a broken answer, never a short one."""
        self.conn.abort()

    # -- carrying on ------------------------------------------------------------

    def carry_on(self, work: Later) -> None:
        """Run ``work`` (when there is any) as this request's task."""
        if work is not None:
            self.conn.run(self, work)

    def body_then(self, limit: int, step: BodyStep) -> Later:
        """Carry on with ``step`` once the whole body (at most ``limit`` bytes) is in.

        No body: at once. A small one (by Content-Length): from the parser's
        callback when its last byte arrives, without a task. Else a coroutine
        that reads it (chunked, or large).
        """
        if not self.has_body:
            return step(b"")
        length = self.length
        if length is not None and length <= min(WHOLE_BODY, limit):
            self.body.when_complete(self._told(step))
            return None
        return then(self._whole(limit), step)

    def _told(self, step: BodyStep) -> Callable[[bytes | BaseException], None]:
        def told(raw: bytes | BaseException) -> None:
            try:
                if not isinstance(raw, bytes | GateError | ClientGone):
                    raw = GateError("The request body could not be read.")
                self.carry_on(step(raw))
            except Exception as exc:  # a bug: the connection must not be left hanging
                self.fail(exc)

        return told

    async def _whole(self, limit: int) -> bytes | GateError | ClientGone:
        try:
            return await self.body.read(limit, self.length)
        except (GateError, ClientGone) as error:  # too large, cut short, stalled, or gone
            return error

    # -- writing the answer ---------------------------------------------------

    def respond(
        self,
        status: int,
        reason: bytes,
        headers: bytes,
        *,
        length: int | None,
        body: bytes = b"",
        bodiless: bool = False,
    ) -> bool:
        """Write the status line and head (with ``body`` when given whole).

        Returns whether the body that follows must be chunk-encoded. ``length``
        None with a body to stream: chunked for HTTP/1.1, until close for 1.0.
        """
        self.sent, self.status = True, status
        if not self.body.done or self.conn.draining:
            self.close = True  # unread request bytes, or shutting down: end after this
        framing: bytes
        chunked = False
        if bodiless:
            framing = b"Content-Length: %d\r\n" % length if length is not None else b""
        elif length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif self.http10:
            framing, self.close = b"", True
        else:
            framing, chunked = b"Transfer-Encoding: chunked\r\n", True
        if self.close:
            framing += b"Connection: close\r\n"
        elif self.http10:
            framing += b"Connection: keep-alive\r\n"
        self.conn.write(
            b"HTTP/1.1 %d %s\r\n%s%s\r\n%s" % (status, reason or b"", headers, framing, body)
        )
        return chunked

    async def write(self, data: bytes, chunked: bool) -> None:
        """One piece of a streamed body, waiting while the client's buffer is full."""
        if chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.conn.write(data)
        await self.conn.drain()

    def end(self, chunked: bool) -> None:
        if chunked:
            self.conn.write(b"0\r\n\r\n")

    def send(self, answer: Answer) -> None:
        """Write one whole answer the gate gives itself (``answer`` also ends the request)."""
        lines = b"".join(b"%s: %s\r\n" % pair for pair in answer.headers)
        if answer.own:  # the gate's own answer (a relayed one keeps its Date)
            lines += self.conn.door.date
        reason = answer.reason.encode("latin-1") if answer.reason else REASONS.get(answer.status)
        self.respond(
            answer.status, reason or b"", lines, length=len(answer.body),
            body=answer.body if self.method != "HEAD" else b"",
        )  # fmt: skip
