"""gate.http.forward's task-free path (``forward_now``): what it owes after the answer's head.

A real gate runs in front of a real upstream over loopback sockets (the
sandbox, or a raw server that answers in pieces). What is checked is what an
operator or a client sees: the status, ``gate_requests_in_flight``, whether
the pool still has its connections, and, through a client socket that
records, what the gate knew at the moment the answer was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from gate.app import create_admin_app, create_app
from gate.config import Settings
from gate.keys import STORE
from gate.sandbox import make_token
from tests.conftest import GateClient, MakeSettings, ServeApp, Upstream
from tests.http.fake_transport import FakeTransport, answers, connect
from tests.support import CUSTOMER, PARTNER_A, agreements_path, confirmation, metric, orders_path


class FlakyStream(io.StringIO):
    """A log stream whose next write fails, as a full non-blocking stderr pipe does."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = 0

    def write(self, text: str) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise BlockingIOError(errno.EAGAIN, "the log pipe is full")
        return super().write(text)


async def in_flight(admin: Any) -> float:
    response = await admin.get("/metrics")
    return metric(await response.text(), "gate_requests_in_flight")


async def test_a_failure_after_the_head_frees_the_slot_and_in_flight(
    upstream: Upstream,
    make_settings: MakeSettings,
    serve_app: ServeApp,
    aiohttp_client: AiohttpClient,
) -> None:
    """A call that fails after its answer's head still gives back its connection and count.

    The decision line of an allowed order cannot be written (the log pipe is
    full): the client gets a 500, ``gate_requests_in_flight`` is back to 0 and
    the pool's one connection serves the next call.
    """
    settings = make_settings(upstream={"max_connections": 1, "connect_timeout_s": 0.5})
    stream = FlakyStream()
    app = create_app(settings, log_stream=stream)
    gate = await serve_app(app)
    admin = await aiohttp_client(
        create_admin_app(settings, app), server_kwargs={"host": "127.0.0.1"}
    )
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    headers = {"Authorization": f"Bearer {make_token(PARTNER_A)}"}
    async with gate.post(
        orders_path(), json={"lineItems": [{"quantity": 1}]}, headers=headers
    ) as r:
        assert r.status == 201  # looked up and cached; the pool now holds an idle connection
    stream.fail_next = 1  # the next order's decision line, written after its answer's head
    async with gate.post(
        orders_path(), json={"lineItems": [{"quantity": 2}]}, headers=headers
    ) as r:
        assert r.status == 500
    assert len(upstream.sandbox.calls("POST", "/orders")) == 2  # it did go out: after the head
    assert await in_flight(admin) == 0
    for _ in range(3):  # with one connection in the pool, a lost slot makes each of these a 502
        async with gate.get("/v1/customers") as r:
            assert r.status == 200


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    """A loopback upstream that runs ``script`` per connection; its URL."""
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await script(reader, writer)
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


_AGREEMENT = json.dumps({"type": "MicrosoftCloudAgreement", "dateAgreed": "2024-05-01"}).encode()


async def _answers_in_pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads answer at once; a confirmation's 201 comes as its head, then its body a bit later."""
    while True:
        request = await _read_request(reader)
        if request.startswith(b"POST"):
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(_AGREEMENT))  # fmt: skip
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(_AGREEMENT)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()


async def _until_answered(transport: FakeTransport, count: int) -> None:
    async with asyncio.timeout(10):
        while len(answers(transport.written)) < count:
            transport.wrote.clear()
            await transport.wrote.wait()


async def test_a_confirmation_answered_in_pieces_is_recorded_before_the_answer(
    raw_upstream: Callable[[Script], Awaitable[str]], serve_app: ServeApp
) -> None:
    """R5: a confirmation is recorded (and logged) before its caller can read the answer.

    The upstream's 201 comes as a head and then a body, so the task-free path
    hands over to a relay task; the client socket notes, at the moment the
    201 is written, whether the pair is accepted and the decision line out.
    """
    url = await raw_upstream(_answers_in_pieces)
    logs = io.StringIO()
    app = create_app(Settings(upstream={"url": url}), log_stream=logs)
    gate: GateClient = await serve_app(app)
    store = app[STORE]
    seen: list[tuple[bool, bool]] = []

    def on_write(data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 201"):
            recorded = store.inspect(PARTNER_A, CUSTOMER) is not None
            seen.append((recorded, '"event": "decision"' in logs.getvalue()))

    protocol, transport = connect(gate.door, FakeTransport(on_write))
    protocol.data_received(b"GET /v1/customers HTTP/1.1\r\nHost: gate\r\n\r\n")
    await _until_answered(transport, 1)  # the pool now holds an idle connection: task-free
    body = json.dumps(confirmation()).encode()
    protocol.data_received(
        b"POST %s HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (agreements_path().encode(), make_token(PARTNER_A).encode(), len(body), body)
    )
    await _until_answered(transport, 2)
    assert [a.status for a in answers(transport.written)] == [200, 201]
    assert seen == [(True, True)]
    transport.close()
    await asyncio.sleep(0)
