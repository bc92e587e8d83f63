"""App factories: the gate's state and resources, the proxy front door, and the admin app.

The proxy ``Application`` serves no HTTP itself: it holds the process's
state under AppKeys and owns its resources as cleanup contexts (the upstream
pool, the acceptance store), so an ``AppRunner`` starts and stops them.
``start_proxy`` then opens the front door (``gate.http.server``) over that
state. Nothing happens at import time; ``gate.cli`` is the only caller that
runs these on real listeners, and tests run them on free loopback ports.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO

from aiohttp import web

from gate import __version__, admin
from gate.acceptance import AcceptanceStore
from gate.acceptance.shared import SharedTier
from gate.authz import DecisionService
from gate.authz_grpc import GrpcDecisionService, server_credentials
from gate.config import Settings
from gate.core.decide import Decider
from gate.http.server import FrontDoor
from gate.http.tls import Certificates
from gate.http.upstream import UpstreamPool
from gate.keys import (
    CONFIG_PATH,
    HOT_LINES,
    LOGGER,
    METRICS,
    RUNTIME,
    STATE,
    STORE,
    TLS,
    UPSTREAM,
    Lifecycle,
)
from gate.logs import HotLines, make_logger
from gate.metrics import Metrics
from gate.pipeline import Pipeline
from gate.runtime import RuntimeHolder, compile_settings

__all__ = ["create_admin_app", "create_app", "start_authz", "start_grpc_authz", "start_proxy"]


def create_app(
    settings: Settings,
    *,
    log_stream: TextIO | None = None,
    clock: Callable[[], float] | None = None,
    config_path: str | None = None,
) -> web.Application:
    """The proxy's state and resources; ``start_proxy`` serves it once a runner set it up."""
    app = web.Application()
    app[RUNTIME] = RuntimeHolder(compile_settings(settings))
    app[METRICS] = Metrics(__version__)
    stream = log_stream or sys.stdout
    app[LOGGER] = make_logger(settings.log.level, settings.log.format, stream)
    app[HOT_LINES] = HotLines(settings.log.level, settings.log.format, stream, app[LOGGER])
    app[STATE] = Lifecycle()
    app[TLS] = Certificates(app[METRICS].tls_expiry, app[LOGGER])
    app[CONFIG_PATH] = config_path or ""
    app.cleanup_ctx.append(upstream_pool)
    app.cleanup_ctx.append(_acceptance_store(clock))
    return app


async def start_proxy(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> tuple[FrontDoor, int]:
    """Open the proxy listener over a set-up app; returns the front door and its port.

    With server.tls_cert_file set it speaks TLS only (ConfigError when the files are unusable).
    """
    store, logger, settings = app[STORE], app[LOGGER], app[RUNTIME].current.settings
    context = app[TLS].context("proxy", settings.server)
    decider = Decider(app[RUNTIME], store, store.read_subscription)
    pipeline = Pipeline(decider, app[UPSTREAM], store, app[METRICS], app[HOT_LINES])
    door = FrontDoor(pipeline.start, settings.server, logger)
    return door, await door.start(host, port, reuse_port=reuse_port, ssl=context)


async def start_authz(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> tuple[FrontDoor, int]:
    """Open the decision service (Envoy ext_authz, nginx auth_request) over a set-up app."""
    store, settings = app[STORE], app[RUNTIME].current.settings
    decider = Decider(app[RUNTIME], store, store.read_subscription)
    service = DecisionService(decider, settings.authz.path_prefix, app[METRICS], app[HOT_LINES])
    context = app[TLS].context("authz", settings.authz)
    door = FrontDoor(service.start, settings.server, app[LOGGER], forwards=False)
    return door, await door.start(host, port, reuse_port=reuse_port, ssl=context)


async def start_grpc_authz(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> tuple[GrpcDecisionService, int]:
    """Open Envoy's gRPC ext_authz service over a set-up app (TLS with the [authz] files)."""
    store, settings = app[STORE], app[RUNTIME].current.settings
    decider = Decider(app[RUNTIME], store, store.read_subscription)
    service = GrpcDecisionService(decider, app[METRICS], app[HOT_LINES])
    credentials = server_credentials(settings.authz)
    bound = await service.start(
        host,
        port,
        reuse_port=reuse_port,
        credentials=credentials,
        max_body=settings.server.max_gated_body_bytes,
    )
    return service, bound


async def upstream_pool(app: web.Application) -> AsyncIterator[None]:
    """One pool of keep-alive upstream connections per process, for every call and lookup."""
    runtime = app[RUNTIME].current
    upstream = runtime.settings.upstream
    pool = UpstreamPool(
        runtime.upstream,
        limit=upstream.max_connections,
        connect_timeout=upstream.connect_timeout_s,
        read_timeout=upstream.read_timeout_s,
    )
    app[UPSTREAM] = pool
    yield
    pool.close()


def _acceptance_store(
    clock: Callable[[], float] | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def acceptance_store(app: web.Application) -> AsyncIterator[None]:
        """The cache of confirmed pairs (snapshot loaded and saved when set), its shared tier."""
        settings = app[RUNTIME].current.settings
        extra = {"clock": clock} if clock is not None else {}
        shared = None
        if settings.acceptance.shared_url:
            shared = SharedTier(settings.acceptance, app[METRICS], app[LOGGER])
        store = AcceptanceStore(
            settings.acceptance,
            app[UPSTREAM],
            app[RUNTIME].current.upstream_prefix,
            app[METRICS],
            shared=shared,
            **extra,
        )
        snapshot = (
            Path(settings.acceptance.snapshot_path) if settings.acceptance.snapshot_path else None
        )
        if snapshot is not None and snapshot.exists():
            try:
                loaded = store.load(snapshot)
                app[LOGGER].info("snapshot_loaded", path=str(snapshot), entries=loaded)
            except OSError as error:  # a snapshot is an optimisation: start without it
                app[LOGGER].error("snapshot_unreadable", path=str(snapshot), error=str(error))
        app[STORE] = store
        await store.start()
        yield
        await store.close()
        if snapshot is not None:
            try:
                saved = store.save(snapshot)
                app[LOGGER].info("snapshot_saved", path=str(snapshot), entries=saved)
            except OSError as error:
                app[LOGGER].error("snapshot_not_saved", path=str(snapshot), error=str(error))

    return acceptance_store


def create_admin_app(settings: Settings, proxy: web.Application) -> web.Application:
    """The operator's listener: metrics, health, and (with a token) the admin calls."""
    app = web.Application(middlewares=[admin.token_guard()])
    admin.add_routes(app, admin.LocalGate(proxy))
    return app
