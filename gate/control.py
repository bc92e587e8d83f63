"""The control channel between the supervising parent and each worker: JSON lines on a socketpair.

Either side may ask (``{"id": 7, "op": "inspect", ...}``) and the other
answers with the same id (``{"id": 7, "reply": ...}``); a message without an
id is a notice that needs no answer (a worker telling the parent it recorded
a confirmation). Only ids, states and times cross it: no personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from gate.tasks import spawn

__all__ = ["Channel", "Handler"]

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""Answers one request (or takes one notice); what it returns is the reply."""

_LIMIT = 16 * 1024 * 1024  # a worker's /metrics text fits well within this


class Channel:
    """One end of a control socketpair."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
    ) -> None:
        self._reader, self._writer, self._handler = reader, writer, handler
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = asyncio.get_running_loop().create_future()
        self._reading = asyncio.get_running_loop().create_task(self._read(), name="control")

    @classmethod
    async def open(cls, sock: socket.socket, handler: Handler) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=_LIMIT)
        return cls(reader, writer, handler)

    async def ask(self, op: str, within_s: float = 5.0, **fields: Any) -> Any:
        """Send a request and wait (bounded) for its reply."""
        ident = next(self._ids)
        reply = asyncio.get_running_loop().create_future()
        self._waiting[ident] = reply
        try:
            self._send({"id": ident, "op": op, **fields})
            async with asyncio.timeout(within_s):
                return await reply
        finally:
            self._waiting.pop(ident, None)

    def tell(self, op: str, **fields: Any) -> None:
        """Send a notice; nobody answers it."""
        self._send({"op": op, **fields})

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer.is_closing():
            raise ConnectionError("the control channel is closed")
        self._writer.write(json.dumps(message).encode() + b"\n")

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if "reply" in message or "failed" in message:
                    waiter = self._waiting.get(message.get("id", 0))
                    if waiter is not None and not waiter.done():
                        if "failed" in message:
                            waiter.set_exception(RuntimeError(message["failed"]))
                        else:
                            waiter.set_result(message["reply"])
                    continue
                spawn(self._answer(message), "control-answer", self._tasks)
        except (ConnectionError, ValueError):
            pass
        finally:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the control channel closed"))
            if not self.closed.done():
                self.closed.set_result(None)

    async def _answer(self, message: dict[str, Any]) -> None:
        ident = message.get("id")
        try:
            reply = await self._handler(message)
        except Exception as exc:  # a request the other side cannot serve: say so, go on
            if ident is not None:
                with contextlib.suppress(ConnectionError):
                    self._send({"id": ident, "failed": type(exc).__name__})
            return
        if ident is not None:
            with contextlib.suppress(ConnectionError):
                self._send({"id": ident, "reply": reply})

    async def close(self) -> None:
        """Close this end (the other end's reader then ends); safe to call twice."""
        self._writer.close()
        if not self._reading.done():
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
