"""A socket-free client side for ``ProxyProtocol``: a transport that records, as uvicorn's tests do.

``FakeTransport`` stands in for the client's socket only: it keeps every byte
the protocol writes, counts pause/resume of reading, and on close or abort
tells the protocol the connection is lost (from the loop, as asyncio does).
``answers`` parses what was written with httptools, so a test reads the
answers a client would; ``get``, ``post`` and ``chunked`` are the requests a
client sends, ``feed`` sends them, and ``App`` is a small handler that answers
each request with what it read.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from gate.config import ServerSettings
from gate.core.action import Answer, answer_error
from gate.errors import GateError
from gate.http.cycle import ClientGone, Cycle
from gate.http.protocol import ProxyProtocol
from gate.http.server import FrontDoor

__all__ = [
    "App",
    "FakeTransport",
    "Written",
    "answers",
    "chunked",
    "connect",
    "error_name",
    "feed",
    "get",
    "make_door",
    "post",
    "settle",
]


class FakeTransport:
    """What ``ProxyProtocol`` sees of a client socket; records everything done to it."""

    def __init__(self, on_write: Callable[[bytes], None] | None = None) -> None:
        self.protocol: ProxyProtocol | None = None
        self.writes: list[bytes] = []
        self.reading = True
        self.pauses = 0
        self.closed = False
        self.aborted = False
        self.wrote = asyncio.Event()  # set on each write, for a test waiting on an answer
        self._on_write = on_write

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 54321) if name == "peername" else default

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after close"
        if self._on_write is not None:
            self._on_write(data)
        self.writes.append(bytes(data))
        self.wrote.set()

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:  # asyncio calls connection_lost soon after, not inside
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


Handler = Callable[[Cycle], Coroutine[Any, Any, None] | None]


def make_door(handler: Handler, **server: Any) -> FrontDoor:
    """A front door (never listening) with ``handler`` and ``server`` settings overridden."""
    logger = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[structlog.processors.JSONRenderer()],
    )
    door = FrontDoor(handler, ServerSettings(**server), logger)
    door.date = b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
    return door


def connect(
    door: FrontDoor, transport: FakeTransport | None = None
) -> tuple[ProxyProtocol, FakeTransport]:
    """A new client connection on ``door``, its socket a ``FakeTransport``."""
    transport = transport or FakeTransport()
    protocol = ProxyProtocol(door)
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


@dataclass
class Written:
    """One answer as a client parses it off the wire."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        found = [value for key, value in self.headers if key.lower() == name.lower()]
        return found[0] if found else None


def answers(data: bytes, interim: bool = False) -> list[Written]:
    """The whole answers in ``data``, in order (100 Continue only with ``interim``)."""
    found: list[Written] = []
    while b"\r\n\r\n" in data:
        head, data = data.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        written = Written(int(status_line[9:12]))
        for line in lines:
            name, _, value = line.partition(b":")
            written.headers.append((name, value.strip()))
        length = written.header(b"content-length")
        if written.header(b"transfer-encoding") == b"chunked":
            while True:
                size_line, data = data.split(b"\r\n", 1)
                size = int(size_line, 16)
                written.body += data[:size]
                data = data[size + 2 :]
                if size == 0:
                    break
        elif length is not None and written.status >= 200:
            if len(data) < int(length):
                break  # cut short: not a whole answer
            written.body, data = data[: int(length)], data[int(length) :]
        if interim or written.status >= 200:
            found.append(written)
    return found


class App:
    """The handler under test's protocol: answers ``METHOD target|body`` once it read the body.

    ``hold`` keeps every answer back until set; ``read_body=False`` answers
    without reading the body. A body that fails with a gate error is answered
    with it, as the pipeline does.
    """

    def __init__(self, *, hold: asyncio.Event | None = None, read_body: bool = True) -> None:
        self.hold = hold
        self.read_body = read_body
        self.cycles: list[Cycle] = []
        self.gone = 0  # bodies that ended because the client left

    def __call__(self, cycle: Cycle) -> Coroutine[Any, Any, None] | None:
        self.cycles.append(cycle)
        return self._answer(cycle)

    async def _answer(self, cycle: Cycle) -> None:
        if self.hold is not None:
            await self.hold.wait()
        body = b""
        if self.read_body:
            try:
                parts = []
                while (chunk := await cycle.body.next()) is not None:
                    parts.append(chunk)
                body = b"".join(parts)
            except GateError as error:
                cycle.answer(answer_error(error))
                return
            except ClientGone:
                self.gone += 1
                raise
        text = b"%s %s|%s" % (cycle.method.encode(), cycle.target.encode(), body)
        cycle.answer(Answer(200, text, ((b"Content-Type", b"text/plain"),)))


async def settle() -> None:
    """Let the loop run what the last feed started (tasks, call_soon)."""
    for _ in range(10):
        await asyncio.sleep(0)


def get(target: str, *extra: str) -> bytes:
    lines = "".join(f"{line}\r\n" for line in extra)
    return f"GET {target} HTTP/1.1\r\nHost: gate\r\n{lines}\r\n".encode()


def post(target: str, body: bytes, *extra: str) -> bytes:
    lines = "".join(f"{line}\r\n" for line in extra)
    return (
        f"POST {target} HTTP/1.1\r\nHost: gate\r\nContent-Length: {len(body)}\r\n{lines}\r\n"
    ).encode() + body


def chunked(target: str, *chunks: bytes) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    head = f"POST {target} HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head.encode() + framed + b"0\r\n\r\n"


def feed(protocol: ProxyProtocol, data: bytes, *, step: int = 0) -> None:
    """Hand ``data`` to the protocol whole, or ``step`` bytes at a time."""
    if not step:
        protocol.data_received(data)
        return
    for start in range(0, len(data), step):
        protocol.data_received(data[start : start + step])


def error_name(written: Written) -> str:
    name: str = json.loads(written.body)["errorName"]
    return name
