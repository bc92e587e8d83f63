"""gate.authz, the decision service, in process over a real socket (the rest: tests/contract)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gate.app import create_app, start_authz
from gate.http.server import FrontDoor
from tests.conftest import MakeSettings, Upstream
from tests.support import CUSTOMER, PARTNER_A, auth, decisions, log_lines, order, orders_path

_ORDER = json.dumps(order()).encode()


@pytest.fixture
async def authz(make_settings: MakeSettings) -> AsyncIterator[tuple[int, io.StringIO]]:
    """A decision service on a free loopback port in front of the sandbox; its port and log."""
    logs = io.StringIO()
    app = create_app(make_settings(authz={"path_prefix": "/authz"}), log_stream=logs)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    door: FrontDoor
    door, port = await start_authz(app, "127.0.0.1", 0)
    yield port, logs
    await door.drain(0)
    await runner.cleanup()


@pytest.mark.parametrize(
    "length",
    [
        pytest.param(len(_ORDER), id="small-body"),  # decided when the body is in, no task
        pytest.param(200_000, id="large-body"),  # read by a task
    ],
)
async def test_a_client_that_leaves_mid_body_gets_a_499_line(
    authz: tuple[int, io.StringIO], length: int
) -> None:
    """§4: a check whose client leaves before its body is in is logged 499 client_gone."""
    port, logs = authz
    head = "".join(f"{name}: {value}\r\n" for name, value in auth().items())
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /authz{orders_path()} HTTP/1.1\r\nHost: gate\r\n{head}"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
        + _ORDER[:10]
    )
    await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    async with asyncio.timeout(10):
        while not decisions(logs):  # noqa: ASYNC110 - the log stream has no event to wait on
            await asyncio.sleep(0.02)
    [line] = decisions(logs)
    assert (line["status"], line["decision"], line["reason"]) == (499, "blocked", "client_gone")


async def test_an_allowed_check_is_a_bare_200_with_its_decision_and_date(
    authz: tuple[int, io.StringIO], upstream: Upstream
) -> None:
    """§4: an allow is 200, X-Gate-Decision (none when not gated), Date, no body; keep-alive.

    Byte for byte, on one connection: a looked-up and a cached order (allowed, each
    logged), a cancel-only order edit (not gated: logged, no header) and a read (neither).
    """
    port, logs = authz
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    token = auth()["Authorization"]
    cancel = b'{"status":"cancelled"}'
    checks = [("POST", orders_path(), _ORDER, b"allowed")] * 2 + [
        ("PATCH", f"{orders_path()}/order-1", cancel, None),
        ("GET", orders_path(), b"", None),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(10):
        for method, path, body, decision in checks:
            writer.write(
                f"{method} /authz{path} HTTP/1.1\r\nHost: gate\r\nAuthorization: {token}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            answer = await reader.readuntil(b"\r\n\r\n")
            line = b"X-Gate-Decision: %s\r\n" % decision if decision else b""
            expected = b"HTTP/1.1 200 OK\r\n%sDate: [^\r\n]+ GMT\r\nContent-Length: 0\r\n\r\n"
            assert re.fullmatch(expected % re.escape(line), answer), answer
    writer.close()
    await writer.wait_closed()
    events = [(line["event"], line["status"]) for line in log_lines(logs) if "status" in line]
    assert events == [("decision", 200), ("decision", 200), ("not_gated", 200)]
    assert [line["decision"] for line in decisions(logs)] == ["allowed", "allowed"]
