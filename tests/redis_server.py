"""A real redis-server for the shared tier's tests: loopback, a free port, no persistence.

Each server is started by a test (``start_redis`` fixture in tests/conftest.py)
and stopped by its PID at the end. TLS uses a certificate made with openssl,
as tests/contract/test_tls.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as redis_client

from tests.support import free_port

__all__ = ["REDIS_SERVER", "RedisServer", "tls_files"]

REDIS_SERVER = shutil.which("redis-server")
_BOUND_S = 10.0


def tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and key) for 127.0.0.1, which is also its own CA."""
    cert, key = directory / "redis-cert.pem", directory / "redis-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class RedisServer:
    """One redis-server process; ``kill`` and ``start`` again keep its port (a restart)."""

    directory: Path
    password: str = ""
    tls: tuple[Path, Path] | None = None
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    _client: redis_client.Redis | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"

    def _argv(self) -> list[str]:
        assert REDIS_SERVER is not None
        log = str(self.directory / "redis.log")
        argv = [REDIS_SERVER, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--logfile", log]  # fmt: skip
        if self.tls is None:
            argv += ["--port", str(self.port)]
        else:
            cert, key = self.tls
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                     "--tls-auth-clients", "no"]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    async def start(self) -> RedisServer:
        self.process = await asyncio.create_subprocess_exec(
            *self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        async with asyncio.timeout(_BOUND_S):
            while True:
                log = self.directory / "redis.log"
                assert self.process.returncode is None, log.read_text() if log.exists() else ""
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return self
                await asyncio.sleep(0.02)

    async def kill(self) -> None:
        """SIGKILL by PID: the abrupt end a crashed or rescheduled Redis gives its clients."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    @property
    def client(self) -> redis_client.Redis:
        """The test's own client: one connection, so its handshake adds no commands mid-test."""
        if self._client is None:
            self._client = redis_client.Redis.from_url(self.url, single_connection_client=True)
        return self._client

    async def close(self) -> None:
        """Close the test's client and stop the server by its PID."""
        if self._client is not None:
            with contextlib.suppress(redis_client.RedisError, OSError):
                await self._client.aclose()
        await self.kill()

    async def calls(self) -> dict[str, int]:
        """Commands served so far by name (INFO commandstats), the INFOs asking excluded."""
        stats = await self.client.info("commandstats")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if isinstance(value, dict)
        }
        calls.pop("info", None)
        return calls
