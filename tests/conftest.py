"""Fixtures: a recording sandbox upstream and gates in front of it, all on real loopback sockets."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer
from yarl import URL

from gate import sandbox
from gate.app import create_admin_app, create_app, start_proxy
from gate.config import Settings
from gate.http.server import FrontDoor
from gate.keys import STATE
from tests.redis_server import REDIS_SERVER, RedisServer, tls_files


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GATE_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("GATE_"):
            monkeypatch.delenv(name)
    yield


@dataclass
class Upstream:
    server: TestServer
    sandbox: sandbox.Sandbox

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> Upstream:
    """The sandbox Partner Center, listening on a free loopback port."""
    sb = sandbox.Sandbox()
    server = await aiohttp_server(sandbox.create_app(sb), host="127.0.0.1")
    return Upstream(server, sb)


StartRedis = Callable[..., Awaitable[RedisServer]]


@pytest.fixture
async def start_redis(tmp_path: Path) -> AsyncIterator[StartRedis]:
    """Start real redis-servers on free loopback ports (no persistence); stopped by PID after."""
    if REDIS_SERVER is None:
        pytest.skip("needs redis-server (Debian package redis-server: scripts/test installs it)")
    started: list[RedisServer] = []

    async def start(password: str = "", tls: bool = False) -> RedisServer:
        directory = tmp_path / f"redis-{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, password, tls_files(directory) if tls else None)
        started.append(server)
        return await server.start()

    yield start
    for server in started:
        await server.close()


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(upstream: Upstream) -> MakeSettings:
    """Settings pointing at the sandbox; keyword arguments are whole sections, as dicts."""

    def make(**sections: dict[str, Any]) -> Settings:
        merged: dict[str, Any] = {"upstream": {"url": upstream.url}}
        for name, values in sections.items():
            merged[name] = {**merged.get(name, {}), **values}
        return Settings(**merged)

    return make


@dataclass
class _Listening:
    port: int


class GateClient:
    """An HTTP client for a running gate's proxy port, paths relative to it (like TestClient)."""

    def __init__(self, runner: web.AppRunner, door: FrontDoor, port: int) -> None:
        self.runner, self.door = runner, door
        self.server = _Listening(port)
        self.session = aiohttp.ClientSession()
        self._base = f"http://127.0.0.1:{port}"
        self.closed = False

    async def close(self) -> None:
        """Stop the gate as `gate serve` does: drain, then the cleanup contexts (snapshot)."""
        if not self.closed:
            self.closed = True
            await self.session.close()
            await self.door.drain(0)
            await self.runner.cleanup()

    def make_url(self, path: str) -> URL:
        return URL(self._base + path)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, self._base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Any:
        return self.request("HEAD", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


ServeApp = Callable[[web.Application], Awaitable[GateClient]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Serve a proxy app through its front door on a free loopback port; stopped after."""
    started: list[GateClient] = []

    async def serve(app: web.Application) -> GateClient:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        door, port = await start_proxy(app, "127.0.0.1", 0)
        app[STATE].listening = True
        client = GateClient(runner, door, port)
        started.append(client)
        return client

    yield serve
    for client in reversed(started):
        await client.close()


@dataclass
class Gate:
    client: GateClient
    admin: TestClient[web.Request, web.Application]
    app: web.Application
    logs: io.StringIO
    upstream: Upstream

    async def metrics(self) -> str:
        response = await self.admin.get("/metrics")
        return await response.text()


StartGate = Callable[..., Awaitable[Gate]]


@pytest.fixture
def start_gate(
    aiohttp_client: AiohttpClient,
    upstream: Upstream,
    make_settings: MakeSettings,
    serve_app: ServeApp,
) -> StartGate:
    """Start a gate (proxy front door + admin listener) in front of the sandbox."""

    async def start(settings: Settings | None = None, **sections: dict[str, Any]) -> Gate:
        settings = settings or make_settings(**sections)
        logs = io.StringIO()
        app = create_app(settings, log_stream=logs)
        client = await serve_app(app)
        admin = await aiohttp_client(
            create_admin_app(settings, app), server_kwargs={"host": "127.0.0.1"}
        )
        return Gate(client, admin, app, logs, upstream)

    return start


@pytest.fixture
async def gate(start_gate: StartGate) -> Gate:
    """A gate with the default policy (enforce) in front of the sandbox."""
    return await start_gate()
