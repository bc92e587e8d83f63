"""A request body as it arrives: fed chunk by chunk by the parser, read by the pipeline.

A reader takes it chunk by chunk (a streamed pass-through body) or whole (a
gated call's, at most a limit); a small body by Content-Length is told whole
from the parser's callback, without a reader task (``Body.when_complete``).
Reading pauses the client socket while more than 256 KiB wait unread, and
``Expect: 100-continue`` is answered only when the body is wanted.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gate.errors import AmbiguousBody, BodyTooLarge
from gate.http.limits import HIGH_WATER

if TYPE_CHECKING:
    from gate.http.flow import ConnectionState

__all__ = ["Body"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Body:
    """A request body as it arrives, read chunk by chunk or whole.

    It needs of its connection only the flow control and the body clock
    (``ConnectionState``), not the parsing.
    """

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

    def __init__(self, conn: ConnectionState, expect_continue: bool) -> None:
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
