"""gate.authz, the decision service, in process over a real socket (the rest: tests/contract)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gate.app import create_app, start_authz
from gate.http.server import FrontDoor
from tests.conftest import MakeSettings
from tests.support import auth, decisions, order, orders_path

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
