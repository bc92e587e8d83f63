"""A fault-injecting upstream: asyncio raw sockets on a free loopback port, every byte chosen.

It speaks just enough Partner Center (agreements, orders, anything else
echoed as 200) and records each request it read whole. Each kind of call
(``agreements``, ``orders``, ``other``) has its own ``Fault``, switched while
it runs. ``stop()`` frees the port (connections are then refused) and cuts
every open connection; ``start()`` listens on the same port again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from enum import StrEnum


class Fault(StrEnum):
    OK = "ok"  # behave like Partner Center
    HANG = "hang"  # read the request, never answer
    GARBAGE = "garbage"  # a status line that is not HTTP
    RESET = "reset"  # status line, headers, part of the body, then a TCP reset
    DROP = "drop"  # read the request, close without a byte
    SLOW = "slow"  # half the answer, then the rest in ten pieces, each within read_timeout_s
    STALL = "stall"  # the head and part of the body, then silence
    STORM = "storm"  # 503 Service Unavailable


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    target: str
    headers: dict[str, str]  # lowercased names, last value wins
    body: bytes


@dataclass
class FaultUpstream:
    faults: dict[str, Fault] = field(
        default_factory=lambda: dict.fromkeys(("agreements", "orders", "other"), Fault.OK)
    )
    accepted: set[str] = field(default_factory=set)  # customers with an MCA, for any partner
    seen: list[Seen] = field(default_factory=list)
    slow_piece_s: float = 0.1
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, kind: str) -> list[Seen]:
        return [seen for seen in self.seen if _kind(seen.method, seen.target) == kind]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._writers.add(writer)
        self._tasks.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): the connection ends here, quietly
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it as its fault says; False to end the connection."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.seen.append(Seen(method, target, headers, body))
        kind = _kind(method, target)
        fault = self.faults[kind]
        if fault is Fault.HANG:
            await reader.read()  # until the gate gives up and closes
            return False
        if fault is Fault.DROP:
            return False
        if fault is Fault.GARBAGE:
            writer.write(b"HTPT/1.1 2OO Banana\r\nX: y\r\n\r\n")
            await writer.drain()
            return False
        if fault is Fault.STORM:
            await _write(writer, 503, b'{"code": 503, "description": "storm"}')
            return True
        answer = self._answer(kind, method, target, body)
        status_head = (
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        )
        status_head %= (201 if kind == "orders" else 200, len(answer))
        if fault is Fault.OK:
            writer.write(status_head + answer)
            await writer.drain()
            return True
        writer.write(status_head + answer[: len(answer) // 2])
        await writer.drain()
        if fault is Fault.RESET:
            return False  # the transport is aborted: a reset mid-body
        if fault is Fault.STALL:
            await reader.read()
            return False
        rest = answer[len(answer) // 2 :]
        step = -(-len(rest) // 10)
        for start in range(0, len(rest), step):  # SLOW: the rest in ten pieces
            await asyncio.sleep(self.slow_piece_s)
            writer.write(rest[start : start + step])
            await writer.drain()
        return True

    def _answer(self, kind: str, method: str, target: str, body: bytes) -> bytes:
        customer = target.split("/")[3] if target.startswith("/v1/customers/") else ""
        if kind == "agreements":
            items = [{"type": "MicrosoftCloudAgreement"}] if customer in self.accepted else []
            return json.dumps({"totalCount": len(items), "items": items}).encode()
        if kind == "orders":
            return json.dumps({"id": f"order-{len(self.seen)}", "size": len(body)}).encode()
        return json.dumps({"method": method, "target": target, "pad": "x" * 200}).encode()


def _kind(method: str, target: str) -> str:
    path = target.partition("?")[0].lower()
    if method == "GET" and path.endswith("/agreements"):
        return "agreements"
    if method == "POST" and path.endswith("/orders"):
        return "orders"
    return "other"


async def _write(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    writer.write(
        b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (status, len(body), body)
    )
    await writer.drain()
