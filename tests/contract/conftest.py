"""Contract-test tools: raw HTTP/1.1 over asyncio sockets, and `gate serve` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.conftest import Upstream
from tests.support import GATE_COMMAND, free_port

_READ_BOUND_S = 20.0


@dataclass
class RawResponse:
    """One HTTP/1.1 response as the bytes on the wire framed it."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


async def read_response(reader: asyncio.StreamReader) -> RawResponse | None:
    """The next response on a connection, or None when it is closed first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    status = int(status_line.split(" ", 2)[1])
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.readexactly(int(headers.get("Content-Length", "0")))
    return RawResponse(status, headers, body)


async def exchange(port: int, data: bytes, count: int = 1) -> list[RawResponse]:
    """Send raw bytes to a loopback port; read up to ``count`` responses or until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        responses: list[RawResponse] = []
        async with asyncio.timeout(_READ_BOUND_S):
            while len(responses) < count:
                response = await read_response(reader)
                if response is None:
                    break
                responses.append(response)
        return responses
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@dataclass
class Served:
    """A `gate serve` child process and where it listens."""

    process: asyncio.subprocess.Process
    config: Path
    stdout: Path
    stderr: Path
    proxy_url: str
    admin_url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.pid, signum)

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8")

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far: whole lines only (a process may be mid-write)."""
        written = self.output()
        whole = written[: written.rfind("\n") + 1]
        return [json.loads(line) for line in whole.splitlines() if line.startswith("{")]

    async def wait_for_output(self, text: str, bound_s: float = _READ_BOUND_S) -> None:
        """Wait (bounded) until the process has logged ``text``."""
        async with asyncio.timeout(bound_s):
            while text not in self.output():  # noqa: ASYNC110 - a file has no event to await
                await asyncio.sleep(0.02)

    async def wait_exit(self, bound_s: float = _READ_BOUND_S) -> int:
        async with asyncio.timeout(bound_s):
            return await self.process.wait()

    def decisions(self) -> list[dict[str, Any]]:
        """The decision log lines the gate wrote so far."""
        return [line for line in self.lines() if line.get("event") == "decision"]

    async def decided(self, count: int) -> list[dict[str, Any]]:
        """The decision lines, once ``count`` are written (the gate logs after answering)."""
        async with asyncio.timeout(_READ_BOUND_S):
            while len(found := self.decisions()) < count:  # noqa: ASYNC110 - a file has no event
                await asyncio.sleep(0.02)
        return found

    def worker_pids(self) -> set[int]:
        """PIDs of the serving processes (forked workers log their own "listening" line)."""
        return {line["pid"] for line in self.lines() if line.get("event") == "listening"}

    def stop(self) -> None:
        """SIGKILL what is still running of this gate: its workers, then the process itself."""
        for pid in self.worker_pids() - {self.pid}:
            with contextlib.suppress(OSError):  # gone already, or not ours: leave it
                if str(self.config) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
        if self.process.returncode is None:
            self.process.kill()


def serve_toml(
    upstream_url: str, proxy_port: int, admin_port: int, extra: str = "", server: str = ""
) -> str:
    """A config on the given loopback ports; ``server`` adds [server] keys, ``extra`` sections."""
    return (
        f'[server]\nlisten = "127.0.0.1:{proxy_port}"\nshutdown_grace_s = 10\n{server}'
        f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n'
        f'[upstream]\nurl = "{upstream_url}"\n{extra}'
    )


ServeGate = Callable[..., Awaitable[Served]]


async def _wait_ready(served: Served) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(_READ_BOUND_S):
        while True:
            if served.process.returncode is not None:
                raise AssertionError(f"gate serve exited early: {served.stderr.read_text()}")
            try:
                async with session.get(f"{served.admin_url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


@pytest.fixture
async def serve_gate(upstream: Upstream, tmp_path: Path) -> AsyncIterator[ServeGate]:
    """Start `gate serve --config FILE` in a child process; every child is killed by PID after."""
    started: list[Served] = []

    async def start(extra: str = "", server: str = "", cwd: Path | None = None) -> Served:
        proxy_port, admin_port = free_port(), free_port()
        index = len(started)
        config = tmp_path / f"gate-{index}.toml"
        config.write_text(serve_toml(upstream.url, proxy_port, admin_port, extra, server))
        stdout, stderr = tmp_path / f"gate-{index}.out", tmp_path / f"gate-{index}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                *GATE_COMMAND, "serve", "--config", str(config),
                stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=cwd,
            )  # fmt: skip
        served = Served(
            process,
            config,
            stdout,
            stderr,
            f"http://127.0.0.1:{proxy_port}",
            f"http://127.0.0.1:{admin_port}",
        )
        started.append(served)
        await _wait_ready(served)
        return served

    yield start
    for served in started:
        served.stop()
        await served.process.wait()
