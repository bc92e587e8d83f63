"""DESIGN §3 front-door limits against a crowd: slow, idle, stalled and oversized clients at once.

tests/contract/test_front_door.py proves each limit on one connection; here
hundreds hold on together, and the proof is that everybody else is still
served while they do, that each of them gets its 408/431 or is closed, and
that no stalled gated call reaches the upstream. Waits are bounded; the
gate's clocks are 2 s, so the crowd is still there while the normal calls run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import AsyncIterator

import pytest

from gate.sandbox import make_token
from tests.conftest import StartGate
from tests.contract.conftest import RawResponse, read_response
from tests.support import CUSTOMER, PARTNER_A, order, orders_path

_BOUND_S = 20.0
_CLOCKS = {"header_timeout_s": 2, "body_timeout_s": 2, "max_header_bytes": 4096}
_ORDER = json.dumps(order()).encode()
_TOKEN = make_token(PARTNER_A)
IDLE, TRICKLE, STALLED, HUGE = 200, 50, 30, 20  # 300 connections holding on


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> None:
    """Both ends of every connection live in this process: make room for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * (IDLE + TRICKLE + STALLED + HUGE) + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def _crowd(port: int, count: int) -> AsyncIterator[list[Conn]]:
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
    try:
        yield conns
    finally:
        for _, writer in conns:
            writer.transport.abort()


def _order_head(length: int) -> bytes:
    return (
        f"POST {orders_path()} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def _outcome(reader: asyncio.StreamReader) -> RawResponse | str:
    """What a crowd member gets before its connection ends: an answer, or "closed"."""
    async with asyncio.timeout(_BOUND_S):
        try:
            response = await read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return "cut"
        if response is None:
            return "closed"
        with contextlib.suppress(ConnectionError):
            assert await reader.read() == b""  # and then the connection ends
        return response


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)


async def test_a_crowd_of_hostile_clients_never_stops_service(start_gate: StartGate) -> None:
    """§3: 300 idle, trickling, stalled and oversized clients; everyone else is still served."""
    gate = await start_gate(server=_CLOCKS)
    sandbox = gate.upstream.sandbox
    sandbox.accept(PARTNER_A, CUSTOMER)  # even an accepted pair's stalled order stays put
    port = gate.client.server.port
    slow_head = b"GET /v1/customers?slow HTTP/1.1\r\nHost: gate\r\nX-Slow: " + b"a" * 500
    huge_head = b"GET /v1/customers?huge HTTP/1.1\r\nHost: gate\r\n" + b"X-Pad: " + b"b" * 8192
    async with (
        _crowd(port, IDLE) as idle,
        _crowd(port, TRICKLE) as tricklers,
        _crowd(port, STALLED) as stalled,
        _crowd(port, HUGE) as huge,
    ):
        for _, writer in stalled:
            writer.write(_order_head(len(_ORDER)) + _ORDER[:10])  # then silence
        for _, writer in huge:
            writer.write(huge_head + b"\r\n\r\n")
        trickling = [asyncio.ensure_future(_trickle(w, slow_head)) for _, w in tricklers]
        outcomes = [asyncio.ensure_future(_outcome(r)) for r, _ in idle + tricklers + stalled]
        huge_outcomes = [asyncio.ensure_future(_outcome(r)) for r, _ in huge]
        try:
            # While the crowd holds on, a normal read and an accepted order are answered.
            async with asyncio.timeout(_BOUND_S):
                read = await gate.client.get("/v1/customers?normal")
                placed = await gate.client.post(
                    orders_path(), json=order(), headers={"Authorization": f"Bearer {_TOKEN}"}
                )
            crowd_left = sum(not outcome.done() for outcome in outcomes)
            results = await asyncio.gather(*outcomes)
            huge_results = await asyncio.gather(*huge_outcomes)
        finally:
            for task in trickling + outcomes + huge_outcomes:
                task.cancel()
            await asyncio.gather(*trickling, *outcomes, *huge_outcomes, return_exceptions=True)
    assert read.status == 200
    assert (placed.status, placed.headers["X-Gate-Decision"]) == (201, "allowed")
    assert crowd_left > IDLE  # the normal calls were answered while the crowd still held on
    idle_results = results[:IDLE]
    trickle_results = results[IDLE : IDLE + TRICKLE]
    stalled_results = results[IDLE + TRICKLE :]
    assert set(idle_results) == {"closed"}  # nothing was asked: no answer owed
    assert {_status(r) for r in trickle_results} == {408}
    assert {_status(r) for r in stalled_results} == {408}
    assert all(
        isinstance(r, RawResponse) and r.headers["X-Gate-Decision"] == "blocked"
        for r in stalled_results
    )
    assert {_status(r) for r in huge_results} <= {431, "closed"}
    assert len(sandbox.calls("POST", "/orders")) == 1  # only the whole order; no stalled one
    assert [r.query_string for r in sandbox.calls("GET", "/v1/customers")] == ["normal"]
    after = await gate.client.get("/v1/customers?after")  # and the gate is none the worse
    assert after.status == 200
    door = gate.client.door
    async with asyncio.timeout(_BOUND_S):  # nothing of the crowd is left behind
        while len(door.connections) > 1:  # noqa: ASYNC110 - a set has no event; 1: our session
            await asyncio.sleep(0.05)


def _status(result: RawResponse | str) -> int | str:
    return result.status if isinstance(result, RawResponse) else result
