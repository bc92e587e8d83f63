"""Fixtures: a recording sandbox upstream and gates in front of it, all on real loopback sockets."""

from __future__ import annotations

import io
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gate import sandbox
from gate.app import create_admin_app, create_app
from gate.config import Settings
from gate.keys import STATE


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
class Gate:
    client: TestClient[web.Request, web.Application]
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
    aiohttp_client: AiohttpClient, upstream: Upstream, make_settings: MakeSettings
) -> StartGate:
    """Start a gate (proxy + admin listeners) in front of the sandbox."""

    async def start(settings: Settings | None = None, **sections: dict[str, Any]) -> Gate:
        settings = settings or make_settings(**sections)
        logs = io.StringIO()
        app = create_app(settings, log_stream=logs)
        client = await aiohttp_client(app, server_kwargs={"host": "127.0.0.1"})
        app[STATE].listening = True
        admin = await aiohttp_client(
            create_admin_app(settings, app), server_kwargs={"host": "127.0.0.1"}
        )
        return Gate(client, admin, app, logs, upstream)

    return start


@pytest.fixture
async def gate(start_gate: StartGate) -> Gate:
    """A gate with the default policy (enforce) in front of the sandbox."""
    return await start_gate()
