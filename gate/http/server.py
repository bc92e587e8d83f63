"""The proxy front door's listener: its connections, their clocks once a second, and a drain.

Each connection is a ``gate.http.protocol.ProxyProtocol``; checking every
connection's clock on one tick a second is cheaper than a timer per request.
The same listener serves the decision service (``gate.authz``) with another
handler.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from email.utils import formatdate
from typing import Any, cast

from structlog.typing import FilteringBoundLogger

from gate.config import ServerSettings
from gate.http.protocol import Handler, ProxyProtocol

__all__ = ["FrontDoor"]

_TICK_S = 1.0


class FrontDoor:
    """The proxy listener: its connections, their clocks, and a drain on shutdown."""

    def __init__(
        self,
        handler: Handler,
        settings: ServerSettings,
        logger: FilteringBoundLogger,
        *,
        forwards: bool = True,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.handler = handler
        self.forwards = forwards  # False: the decision service, which forwards no header lines
        self.logger = logger
        self.header_timeout = settings.header_timeout_s
        self.body_timeout = settings.body_timeout_s
        self.keepalive_timeout = settings.keepalive_timeout_s
        self.max_header_bytes = settings.max_header_bytes
        self.max_target_bytes = settings.max_target_bytes
        self.connections: set[ProxyProtocol] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.draining = False
        self.date = b""
        self.proto = b"http"
        self._server: asyncio.AbstractServer | None = None
        self._ticker: asyncio.TimerHandle | None = None

    async def start(
        self, host: str, port: int, *, reuse_port: bool = False, ssl: _ssl.SSLContext | None = None
    ) -> int:
        """Listen (TLS only, with ``ssl``); returns the port (useful when ``port`` is 0).

        A TLS handshake must end within ``server.header_timeout_s``, as a head must.
        """
        self.proto = b"http" if ssl is None else b"https"
        self._server = await self.loop.create_server(
            self._new_protocol, host, port, backlog=1024, reuse_port=reuse_port or None,
            ssl=ssl, ssl_handshake_timeout=self.header_timeout if ssl is not None else None,
        )  # fmt: skip
        self._tick()
        # Any: typeshed types .sockets as a tuple, uvloop's server gives a list, and mypyc checks
        # a declared type where it is read
        server: Any = self._server
        return int(server.sockets[0].getsockname()[1])

    def _new_protocol(self) -> asyncio.BaseProtocol:
        """A ProxyProtocol for asyncio's factory (one by its methods, not by subclassing)."""
        return cast(asyncio.BaseProtocol, ProxyProtocol(self))

    def _tick(self) -> None:
        self.date = b"Date: %s\r\n" % formatdate(usegmt=True).encode()
        now = self.loop.time()
        for conn in list(self.connections):
            conn.tick(now)
        self._ticker = self.loop.call_later(_TICK_S, self._tick)

    async def drain(self, grace: float) -> None:
        """Stop accepting, let calls in flight finish within ``grace``, then cut the rest."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        try:
            async with asyncio.timeout(grace):
                while self.connections or self.tasks:  # noqa: ASYNC110 - many owners, no event
                    await asyncio.sleep(0.05)
        except TimeoutError:
            for conn in list(self.connections):
                conn.abort()
        if self._ticker is not None:
            self._ticker.cancel()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
