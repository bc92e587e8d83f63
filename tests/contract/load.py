"""Load tools for the contract tests: keep-alive raw clients whose every call is accounted for.

A ``Caller`` owns one client connection, sends one request at a time and
records what became of each: the response, or that none came (the connection
ended first, or a new one was refused). Orders carry a unique
``MS-CorrelationId``, which the sandbox records, so a test can tell exactly
which ones reached the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.contract.conftest import RawResponse, read_response
from tests.support import auth, order, orders_path

_BOUND_S = 20.0
_ORDER = json.dumps(order()).encode()
_IDS = itertools.count(1)


@dataclass
class Call:
    kind: str  # "read" | "order"
    customer: str
    correlation: str
    sent_at: float
    response: RawResponse | None = None  # None: no answer came
    answered_at: float | None = None


def order_request(customer: str, correlation: str, partner_token: str) -> bytes:
    return (
        f"POST {orders_path(customer)} HTTP/1.1\r\nHost: gate\r\nAuthorization: {partner_token}\r\n"
        f"Content-Type: application/json\r\nMS-CorrelationId: {correlation}\r\n"
        f"Content-Length: {len(_ORDER)}\r\n\r\n"
    ).encode() + _ORDER


def read_request(customer: str, correlation: str, partner_token: str) -> bytes:
    return (
        f"GET /v1/customers/{customer}/subscriptions/sub-1 HTTP/1.1\r\nHost: gate\r\n"
        f"Authorization: {partner_token}\r\nMS-CorrelationId: {correlation}\r\n\r\n"
    ).encode()


@dataclass
class Caller:
    """One client connection to a gate, reopened when the gate closes it."""

    port: int
    token: str = field(default_factory=lambda: auth()["Authorization"])
    calls: list[Call] = field(default_factory=list)
    refused: bool = False  # a new connection was refused: the caller has stopped
    _conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(self, kind: str, customer: str) -> Call:
        loop = asyncio.get_running_loop()
        correlation = f"{kind}-{os.getpid()}-{next(_IDS)}"
        record = Call(kind, customer, correlation, loop.time())
        self.calls.append(record)
        build = order_request if kind == "order" else read_request
        try:
            if self._conn is None:
                self._conn = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.refused = True
            return record
        reader, writer = self._conn
        try:
            writer.write(build(customer, correlation, self.token))
            async with asyncio.timeout(_BOUND_S):
                await writer.drain()
                record.response = await read_response(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            record.response = None  # cut mid-answer: counted as no answer
        record.answered_at = loop.time()
        response = record.response
        if response is None or response.headers.get("Connection", "").lower() == "close":
            self.close()
        return record

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].transport.abort()
            self._conn = None


def memory_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def closing(callers: list[Caller]) -> Iterator[list[Caller]]:
    """The callers, their connections closed after."""
    try:
        yield callers
    finally:
        for caller in callers:
            caller.close()
