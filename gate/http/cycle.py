"""One request on a client connection: its head, its body as it arrives, and the answer written.

The protocol (``gate.http.server``) feeds a ``Cycle`` from llhttp's callbacks;
the pipeline reads the body (streamed, or whole for a gated call) and writes
one answer. Reading pauses the client socket while more than 256 KiB of body
wait unread; writing waits whenever the client's socket buffer is full.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gate.core.action import Answer, answer_error
from gate.errors import AmbiguousBody, BodyTooLarge, GateError
from gate.http.limits import HIGH_WATER, WHOLE_BODY
from gate.http.vocabulary import FORWARD, KINDS, NOT_FORWARDED, OVERRIDES, READ, READ_NAMES, REASONS
from gate.tasks import Later, then

if TYPE_CHECKING:
    from gate.http.protocol import ProxyProtocol

__all__ = ["Body", "BodyStep", "ClientGone", "Cycle", "RequestHead"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientGone(Exception):
    """The client closed its connection before the call was over."""


BodyStep = Callable[[bytes | GateError | ClientGone], Later]
"""Carries a cycle on with its whole body (or why it is missing); see ``Cycle.body_then``."""


class RequestHead:
    """A request's headers: raw pairs in order, the few the gate reads, and the lines to forward.

    One pass as llhttp delivers them: each name is lowered once, and the
    header lines for the upstream are built on the way.
    """

    __slots__ = ("found", "lines", "raw")

    def __init__(self) -> None:
        self.raw: list[tuple[bytes, bytes]] = []
        self.found: dict[str, list[str]] = {}
        self.lines: list[bytes] = []  # forwardable header lines, as sent

    def add(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))
        lowered = name.lower()
        kind = KINDS.get(lowered)
        if kind is None:
            if b"_" in lowered and _lookalike(lowered):
                return
            self.lines += (name, b": ", value, b"\r\n")
            return
        if kind & READ:
            self.found.setdefault(lowered.decode(), []).append(value.decode("latin-1"))
        if kind & FORWARD:
            self.lines += (name, b": ", value, b"\r\n")

    def forwardable(self, extra: set[bytes]) -> bytes:
        """The forwarded lines less ``extra`` names too (what a Connection header lists)."""
        kept = []
        for name, value in self.raw:
            lowered = name.lower()
            kind = KINDS.get(lowered)
            if kind is None and b"_" in lowered and _lookalike(lowered):
                continue
            dropped = lowered in extra or lowered.replace(b"_", b"-") in extra
            if (kind is None or kind & FORWARD) and not dropped:
                kept.append(b"%s: %s\r\n" % (name, value))
        return b"".join(kept)

    def getall(self, name: str) -> Sequence[str]:
        """Every value of ``name`` (lowercase), in order."""
        found = self.found.get(name)
        if found is not None or name in READ_NAMES:
            return found or ()
        wanted = name.encode("latin-1")  # a configured name (identity.partner_header)
        return [value.decode("latin-1") for key, value in self.raw if key.lower() == wanted]


def _lookalike(lowered: bytes) -> bool:
    """IIS reads X_Original_URL as X-Original-URL: underscore spellings of dropped headers."""
    dashed = lowered.replace(b"_", b"-")
    return dashed in NOT_FORWARDED or dashed in OVERRIDES


class Body:
    """A request body as it arrives, read chunk by chunk or whole."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_continue",
        "_waiter",
        "buffered",
        "done",
        "error",
        "on_complete",
        "size",
    )

    def __init__(self, conn: ProxyProtocol, expect_continue: bool) -> None:
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: Any = None  # asyncio.Future[None] while a reader waits
        self._continue = expect_continue  # 100 Continue owed before the first read
        self.buffered = 0
        self.size = 0  # bytes received so far
        self.done = False
        self.error: BaseException | None = None
        # Told once when the whole body is in (or it failed), instead of a reader waiting.
        self.on_complete: Callable[[bytes | BaseException], None] | None = None

    # -- fed by the protocol --------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.buffered += len(chunk)
        self.size += len(chunk)
        if self.buffered > HIGH_WATER:
            self._conn.pause_body()
        if self.on_complete is not None:
            self._conn.body_waiting(True)  # the silence body_timeout_s bounds starts again
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()
        self._complete(None)

    def fail(self, error: BaseException) -> None:
        if not self.done and self.error is None:
            self.error = error
            self._wake()
            self._complete(error)

    def when_complete(self, told: Callable[[bytes | BaseException], None]) -> None:
        """Tell ``told`` the whole body (or its failure) once it is in, without a reader task.

        A body already in (a pipelined request's) is told at once.
        """
        self.on_complete = told
        self._conn.body_waiting(True)
        self.send_continue()
        if self.done or self.error is not None:
            self._complete(self.error)

    def _complete(self, error: BaseException | None) -> None:
        told, self.on_complete = self.on_complete, None
        if told is not None:
            self._conn.body_waiting(False)
            chunks = self._chunks
            told(error or (chunks[0] if len(chunks) == 1 else b"".join(chunks)))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the pipeline -------------------------------------------------

    def send_continue(self) -> None:
        """Owe no more: tell the client (``Expect: 100-continue``) to send its body now."""
        if self._continue:
            self._continue = False
            self._conn.write(_CONTINUE)

    @property
    def waiting(self) -> bool:
        """A reader waits for bytes the client has not sent (what body_timeout_s bounds)."""
        return self._waiter is not None

    async def next(self) -> bytes | None:
        """The next chunk, or None at the end; RequestTimeout or ClientGone on failure."""
        while not self._chunks:
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            self.send_continue()
            self._waiter = self._conn.loop.create_future()
            self._conn.body_waiting(True)
            try:
                await self._waiter
            finally:
                self._waiter = None
                self._conn.body_waiting(False)
        chunk = self._chunks.popleft()
        self.buffered -= len(chunk)
        if self.buffered <= HIGH_WATER // 2:
            self._conn.resume_body()
        return chunk

    async def read(self, limit: int, length: int | None) -> bytes:
        """The whole body (a gated call's), at most ``limit`` bytes."""
        if length is not None and length > limit:
            raise BodyTooLarge(
                f"A gated call's body may be at most {limit} bytes.", [{"limit": limit}]
            )
        parts: list[bytes] = []
        size = 0
        while (chunk := await self.next()) is not None:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(
                    f"A gated call's body may be at most {limit} bytes.", [{"limit": limit}]
                )
            parts.append(chunk)
        if length is not None and size != length:
            raise AmbiguousBody("The body ended before its Content-Length.", [])
        return parts[0] if len(parts) == 1 else b"".join(parts)


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
