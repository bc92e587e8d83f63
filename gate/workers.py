"""Workers: ``server.workers = N`` processes on one port under a supervising parent, one gate.

The parent serves no proxy traffic. It starts each worker as ``gate serve
--worker I --control-fd FD`` (each binds the proxy port with SO_REUSEPORT),
runs the one admin listener for all of them, and talks to each worker over
a control socketpair (``gate.control``): ``/metrics`` is the sum of every
worker's, an admin inspect or drop and a reload reach every worker, and a
confirmation recorded by one worker is told to the others at once. A worker
that dies is started again with back-off (``gate_worker_restarts_total``)
while the others keep the port served; a worker that cannot start at all the
first time stops the gate with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from structlog.typing import FilteringBoundLogger

from gate import admin
from gate.config import ConfigError, Settings, load, parse_listen
from gate.control import Channel
from gate.http.tls import Certificates
from gate.metrics import merge, tls_expiry, worker_restarts
from gate.runtime import RuntimeHolder, compile_settings
from gate.tasks import spawn

__all__ = ["Fleet"]

_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
_STABLE_S = 60.0  # a worker up this long has its back-off reset
_READY_S = 30.0  # a worker not ready this long after its start failed to start


@dataclass(slots=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    failures: int = 0


class Fleet:
    """The supervising parent: the workers, their admin listener, their signals."""

    def __init__(
        self, settings: Settings, config_path: str | None, logger: FilteringBoundLogger
    ) -> None:
        self._holder = RuntimeHolder(compile_settings(settings))
        self._config_path = config_path
        self._logger = logger
        self._workers = [_Worker(index) for index in range(settings.server.workers)]
        self._stopping = False
        self._registry = CollectorRegistry()
        self._restarts = worker_restarts(self._registry)
        self._watchers: set[asyncio.Task[None]] = set()
        self._tls = Certificates(tls_expiry(self._registry), logger)  # the admin listener's

    # -- running ---------------------------------------------------------------

    async def run(self) -> int:
        """Start every worker, then the admin listener; serve until SIGTERM; 0 when clean."""
        for worker in self._workers:
            await self._spawn(worker)
        for worker in self._workers:
            if not await self._wait_ready(worker):
                sys.stderr.write(f"gate: worker {worker.index} could not start\n")
                await self._stop_all()
                return 1
        settings = self._holder.current.settings
        runner = web.AppRunner(_admin_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        host, port = parse_listen(settings.admin.listen)
        try:
            context = self._tls.context("admin", settings.admin)
            await web.TCPSite(runner, host, port, ssl_context=context).start()
        except (OSError, ConfigError) as error:
            problems = (
                error.problems if isinstance(error, ConfigError) else [f"cannot listen: {error}"]
            )
            sys.stderr.write("".join(f"gate: {problem}\n" for problem in problems))
            await runner.cleanup()
            await self._stop_all()
            return 1
        self._logger.info("supervising", workers=len(self._workers), admin=settings.admin.listen,
                          pid=os.getpid())  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn_task(self._reload_quietly()))
        for worker in self._workers:
            self._watch(worker)
        await stop.wait()
        worst = await self._stop_all()
        await runner.cleanup()
        return worst

    async def _spawn(self, worker: _Worker) -> None:
        parent_end, child_end = socket.socketpair()
        # -P: not the current directory first on sys.path (a checkout's gate/ would shadow
        # the installed, compiled gate the parent runs).
        argv = [sys.executable, "-P", "-m", "gate", "serve"]
        if self._config_path:
            argv += ["--config", self._config_path]
        argv += ["--worker", str(worker.index), "--control-fd", str(child_end.fileno())]
        worker.ready = asyncio.Event()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(child_end.fileno(),)
            )
        except BaseException:
            parent_end.close()  # no worker to talk to: the pair must not outlive the attempt
            raise
        finally:
            child_end.close()  # the worker holds its own copy now (or there is no worker)
        worker.started = time.monotonic()
        worker.channel = await Channel.open(parent_end, self._handler(worker))

    async def _wait_ready(self, worker: _Worker) -> bool:
        assert worker.process is not None
        ready = asyncio.ensure_future(worker.ready.wait())
        died = asyncio.ensure_future(worker.process.wait())
        done, pending = await asyncio.wait({ready, died}, timeout=_READY_S,
                                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        for task in pending:
            task.cancel()
        return ready in done and worker.process.returncode is None

    def _watch(self, worker: _Worker) -> None:
        self._spawn_task(self._supervise(worker))

    async def _supervise(self, worker: _Worker) -> None:
        """Start a worker again whenever it dies, with back-off, until the gate stops."""
        while not self.stopping():
            assert worker.process is not None
            code = await worker.process.wait()
            if worker.channel is not None:
                await worker.channel.close()
            if self.stopping():
                return
            if time.monotonic() - worker.started > _STABLE_S:
                worker.failures = 0
            delay = _BACKOFF_S[min(worker.failures, len(_BACKOFF_S) - 1)]
            worker.failures += 1
            self._logger.error("worker_died", worker=worker.index, code=code, restart_in_s=delay)
            await asyncio.sleep(delay)
            if self.stopping():
                return
            self._restarts.inc()
            try:
                await self._spawn(worker)
            except OSError as error:  # no process could be made (the interpreter gone, no fds):
                self._logger.error(  # try again after the next back-off, never give up on it
                    "worker_restart_failed", worker=worker.index, error=str(error)
                )
                continue
            if await self._wait_ready(worker):
                self._logger.info("worker_restarted", worker=worker.index)

    async def _stop_all(self) -> int:
        """SIGTERM every worker (each drains within its grace); the worst exit status."""
        self._stopping = True
        grace = self._holder.current.settings.server.shutdown_grace_s
        running = [w.process for w in self._workers if w.process and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        worst = 0
        for process in running:
            try:
                async with asyncio.timeout(grace + 5):
                    code = await process.wait()
            except TimeoutError:
                process.kill()
                code = await process.wait()
            worst = max(worst, code if code >= 0 else 128 - code)
        watchers = list(self._watchers)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for worker in self._workers:
            if worker.channel is not None:
                await worker.channel.close()
        return worst

    def stopping(self) -> bool:
        return self._stopping

    def _spawn_task(self, coro: Any) -> None:
        spawn(coro, "worker-watch", self._watchers)

    # -- the control channel -----------------------------------------------------

    def _handler(self, worker: _Worker) -> Any:
        async def handle(message: dict[str, Any]) -> Any:
            if message["op"] == "ready":
                worker.ready.set()
            elif message["op"] == "recorded":  # a confirmation: every other worker learns it
                for other in self._live():
                    if other is not worker:
                        assert other.channel is not None
                        with contextlib.suppress(ConnectionError):
                            other.channel.tell(
                                "record", partner=message["partner"], customer=message["customer"]
                            )
            return None

        return handle

    def _live(self) -> list[_Worker]:
        return [w for w in self._workers if w.channel is not None and w.ready.is_set()
                and w.process is not None and w.process.returncode is None]  # fmt: skip

    async def _ask_all(self, op: str, **fields: Any) -> list[Any]:
        async def one(worker: _Worker) -> Any:
            assert worker.channel is not None
            try:
                return await worker.channel.ask(op, **fields)
            except (ConnectionError, TimeoutError, RuntimeError):
                return None  # a worker dying now: the others still answer

        return list(await asyncio.gather(*(one(w) for w in self._live())))

    # -- admin.Operated --------------------------------------------------------------

    def token(self) -> str:
        return self._holder.current.settings.admin.token

    def readiness(self) -> str:
        if self._stopping:
            return "draining"
        return "ready" if len(self._live()) == len(self._workers) else "starting"

    async def metrics_text(self) -> bytes:
        texts = [text for text in await self._ask_all("metrics") if isinstance(text, str)]
        return merge([*texts, generate_latest(self._registry).decode()]).encode()

    async def inspect(self, partner: str, customer: str) -> dict[str, Any] | None:
        found = [f for f in await self._ask_all("inspect", partner=partner, customer=customer) if f]
        return max(found, key=lambda entry: str(entry["cached_at"])) if found else None

    async def drop(self, partner: str, customer: str) -> bool:
        return any(await self._ask_all("drop", partner=partner, customer=customer))

    async def reload(self) -> list[str]:
        """Check the file here, then every worker applies it (each logs and counts its own)."""
        path = self._config_path
        try:
            runtime = compile_settings(load(Path(path) if path else None))
            admin.check_restart_free(self._holder.current.settings, runtime.settings)
            rotate = self._tls.prepare(runtime.settings)  # the admin listener's pair
        except ConfigError as error:
            self._logger.error("reload_refused", path=path, problems=error.problems)
            return error.problems
        problems = [p for found in await self._ask_all("reload") if found for p in found]
        if not problems:
            self._holder.current = runtime  # the admin token may have turned
            rotate()
        return problems

    async def _reload_quietly(self) -> None:
        await self.reload()


def _admin_app(fleet: Fleet) -> web.Application:
    app = web.Application(middlewares=[admin.token_guard()])
    admin.add_routes(app, fleet)
    return app
