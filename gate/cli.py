"""The ``gate`` command: serve | check-config | explain | demo | replay | audit | health.

The only place that runs apps on real listeners, installs signal handlers
and picks the event loop (uvloop where available).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from gate import __version__, build
from gate.admin import LocalGate, reload
from gate.app import create_admin_app, create_app, start_authz, start_grpc_authz, start_proxy
from gate.authz_grpc import GrpcDecisionService
from gate.config import ConfigError, Settings, load, parse_listen
from gate.configdiff import DEFAULTS, changes, defaults
from gate.control import Channel
from gate.explain import explain
from gate.http import tls
from gate.http.server import FrontDoor
from gate.keys import LOGGER, STATE, STORE, TLS
from gate.logs import make_logger, redact_library_logs
from gate.replay.run import replay
from gate.runtime import compile_settings
from gate.workers import Fleet

__all__ = ["main"]


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed: its loop is faster for socket-heavy work."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _load(path: str | None) -> Settings | None:
    try:
        return load(Path(path) if path else None)
    except ConfigError as error:
        for problem in error.problems:
            where = f"{path or '(defaults)'}: "
            print(problem if problem.startswith(where) else where + problem, file=sys.stderr)
        return None


def _serve_workers(settings: Settings, config_path: str | None) -> int:
    """One process, or a supervising parent over ``server.workers`` worker processes."""
    if settings.server.workers == 1:
        return _run(_serve(settings, config_path))
    return _run(_supervise(settings, config_path))


async def _supervise(settings: Settings, config_path: str | None) -> int:
    logger = make_logger(settings.log.level, settings.log.format, sys.stdout)
    redact_library_logs(logger)
    return await Fleet(settings, config_path, logger).run()


async def _serve(
    settings: Settings, config_path: str | None, *, control_fd: int | None = None
) -> int:
    """One gate process; with ``control_fd``, a worker under ``gate.workers.Fleet``."""
    with_admin = control_fd is None
    app = create_app(settings, config_path=config_path)
    redact_library_logs(app[LOGGER])
    admin = create_admin_app(settings, app)
    grace = settings.server.shutdown_grace_s
    state_runner = web.AppRunner(app, handle_signals=False)  # the pool and the store
    admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False, shutdown_timeout=1)
    await state_runner.setup()
    await admin_runner.setup()
    host, port = parse_listen(settings.server.listen)
    admin_host, admin_port = parse_listen(settings.admin.listen)
    doors: list[FrontDoor | GrpcDecisionService] = []
    authz_bound = grpc_bound = None
    try:
        admin_tls = app[TLS].context("admin", settings.admin) if with_admin else None
        admin_site = web.TCPSite(admin_runner, admin_host, admin_port, ssl_context=admin_tls)
        door, bound = await start_proxy(app, host, port, reuse_port=settings.server.workers > 1)
        doors.append(door)
        if settings.authz.listen:
            authz_host, authz_port = parse_listen(settings.authz.listen)
            authz, authz_bound = await start_authz(
                app, authz_host, authz_port, reuse_port=settings.server.workers > 1
            )
            doors.append(authz)
        if settings.authz.grpc_listen:
            grpc_host, grpc_port = parse_listen(settings.authz.grpc_listen)
            grpc_authz, grpc_bound = await start_grpc_authz(
                app, grpc_host, grpc_port, reuse_port=settings.server.workers > 1
            )
            doors.append(grpc_authz)
        if with_admin:
            await admin_site.start()
    except (OSError, ConfigError) as error:
        problems = error.problems if isinstance(error, ConfigError) else [f"cannot listen: {error}"]
        for problem in problems:
            print(f"gate: {problem}", file=sys.stderr)
        for opened in doors:
            await opened.drain(0)
        await admin_runner.cleanup()
        await state_runner.cleanup()
        return 1
    app[STATE].listening = True
    # Everything built so far lives as long as the process: keep the collector off it, and
    # let it run less often (a request leaves little cyclic garbage; GC was ~3 % of a call).
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    logger = app[LOGGER]
    if with_admin and not settings.admin.token and not _loopback(admin_host):
        logger.warning("admin_without_token", listen=settings.admin.listen)
    logger.info(
        "listening",
        version=__version__,
        proxy=f"{host}:{bound}",
        admin=f"{admin_host}:{admin_site.port}" if with_admin else None,
        authz=f"{settings.authz.listen.rpartition(':')[0]}:{authz_bound}" if authz_bound else None,
        grpc_authz=(
            f"{settings.authz.grpc_listen.rpartition(':')[0]}:{grpc_bound}" if grpc_bound else None
        ),
        upstream=settings.upstream.url,
        cloud=settings.upstream.cloud,
        mode=settings.policy.mode,
        pid=os.getpid(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload(app) and None)
    channel = await _report_to_parent(app, control_fd, stop) if control_fd is not None else None
    await stop.wait()
    app[STATE].draining = True
    logger.info("draining", grace_s=grace)
    await asyncio.gather(*(opened.drain(grace) for opened in doors))
    if channel is not None:
        await channel.close()
    await admin_runner.cleanup()
    await state_runner.cleanup()
    logger.info("stopped")
    return 0


async def _report_to_parent(app: web.Application, fd: int, stop: asyncio.Event) -> Channel:
    """A worker's end of the control channel: the parent asks, and hears of confirmations."""
    local, store = LocalGate(app), app[STORE]

    async def handle(message: dict[str, Any]) -> Any:
        op = message["op"]
        if op == "metrics":
            return (await local.metrics_text()).decode()
        if op == "inspect":
            return await local.inspect(message["partner"], message["customer"])
        if op == "drop":
            return await local.drop(message["partner"], message["customer"])
        if op == "record":
            store.record(message["partner"], message["customer"], told=True)
            return None
        if op == "reload":
            return await local.reload()
        raise ValueError(f"unknown control request {op!r}")

    channel = await Channel.open(socket.socket(fileno=fd), handle)
    store.on_record = lambda partner, customer: channel.tell(
        "recorded", partner=partner, customer=customer
    )
    channel.closed.add_done_callback(lambda _: stop.set())  # the parent is gone: stop too
    channel.tell("ready", pid=os.getpid())
    return channel


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _tls_problems(settings: Settings, path: str | None) -> bool:
    """Print what keeps the TLS files from serving (missing, mismatched, expired)."""
    problems = tls.check(settings)
    for problem in problems:
        print(f"{path or '(defaults)'}: {problem}", file=sys.stderr)
    return bool(problems)


def _check_config(path: str, against: str | None) -> int:
    settings = _load(path)
    if settings is None or _tls_problems(settings, path):
        return 1
    old = _load(against) if against else defaults()
    if old is None:
        return 1
    print(f"{path}: ok ({len(settings.rules)} rules, mode {settings.policy.mode})")
    baseline = against or DEFAULTS
    lines = changes(old, settings)
    print(f"changes against {baseline}:" if lines else f"no changes against {baseline}")
    for line in lines:
        print(f"  {line}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return 2
    if args.current is not None and args.body is None:
        print("--current needs --body: the edit is compared with it", file=sys.stderr)
        return 2
    raw = current = None
    try:
        if args.body is not None:
            raw = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
        if args.current is not None:
            current = Path(args.current).read_bytes()
    except OSError as error:
        print(f"{error.filename or args.body}: cannot read: {error.strerror}", file=sys.stderr)
        return 2
    for line in explain(settings, args.method, args.path, args.partner, raw, current):
        print(line)
    return 0


def _replay(args: argparse.Namespace) -> int:
    new = _load(args.config)
    old = _load(args.against) if args.against else None
    if new is None or (args.against and old is None):
        return 2
    return replay(
        args.logs,
        compile_settings(new),
        compile_settings(old) if old is not None else None,
        (args.config, args.against),
        as_json=args.json,
        out=sys.stdout,
        err=sys.stderr,
    )


def _health(args: argparse.Namespace) -> int:
    """One line on stdout, exit 0 when the admin listener answers /healthz with 200, else 1."""
    from gate.health import probe

    settings = _load(args.config)
    if settings is None:
        print("unhealthy: the config does not load")
        return 1
    found = probe(settings.admin, args.cert or "", args.key or "", args.timeout)
    print(found.line)
    return 0 if found.healthy else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gate",
        description="Hold CSP purchases and seat changes until MCA acceptance is confirmed.",
    )
    compiled = "compiled: mypyc" if build() == "mypyc" else "pure Python"
    parser.add_argument("--version", action="version", version=f"gate {__version__} ({compiled})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the proxy and the admin listener")
    serve.add_argument("--config", metavar="FILE", help="TOML config (default: built-ins)")
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # started by the parent
    serve.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)
    check = commands.add_parser(
        "check-config", help="validate a config file and show what it changes"
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument("--against", metavar="OLD", help="compare with OLD (default: built-ins)")
    explain = commands.add_parser("explain", help="how a call would be classified and decided")
    explain.add_argument("--config", metavar="FILE")
    explain.add_argument("--partner", metavar="TENANT", help="apply this partner's overrides")
    explain.add_argument("--body", metavar="FILE", help="the request body (- for stdin)")
    explain.add_argument(
        "--current", metavar="FILE", help="a subscription edit: the subscription now (JSON)"
    )
    explain.add_argument("method", metavar="METHOD")
    explain.add_argument("path", metavar="PATH")
    commands.add_parser("demo", help="block -> confirm -> allow against a built-in sandbox")
    replay_ = commands.add_parser(
        "replay", help="re-decide logged calls under another config: what would change"
    )
    replay_.add_argument("--config", metavar="NEW", required=True, help="the config to try")
    replay_.add_argument("--against", metavar="OLD", help="re-decide the old side under OLD")
    replay_.add_argument("--json", action="store_true", help="a JSON report, for machines")
    replay_.add_argument("logs", metavar="DECISION_LOG", nargs="+", help="files, gzip, or -")
    health = commands.add_parser(
        "health", help="ask the running gate's admin /healthz (the config's admin listener and TLS)"
    )
    health.add_argument("--config", metavar="FILE", help="TOML config (default: built-ins)")
    health.add_argument("--cert", metavar="FILE", help="client certificate (mutual TLS)")
    health.add_argument("--key", metavar="FILE", help="its key (default: in --cert's file)")
    health.add_argument("--timeout", type=float, default=3.0, metavar="S", help="default 3")
    _audit_parser(commands)
    return parser


def _audit_parser(commands: Any) -> None:
    audit = commands.add_parser(
        "audit", help="every customer of a partner: would the gate block it, and why"
    )
    audit.add_argument("--config", metavar="FILE", help="TOML config (default: built-ins)")
    audit.add_argument(
        "--token-file", metavar="FILE", required=True, help="the partner's App+User token"
    )
    audit.add_argument("--out", metavar="FILE", help="write the report here (default: stdout)")
    audit.add_argument("--format", choices=("csv", "json"), default="csv")
    audit.add_argument(
        "--concurrency",
        metavar="N",
        type=_positive,
        help="lookups at once (default: 16, at most acceptance.max_concurrent_lookups)",
    )
    audit.add_argument(
        "--warm", action="store_true", help="write each answer to acceptance.shared_url"
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 up, not {text!r}")
    return int(text)


def _audit(args: argparse.Namespace) -> int:
    from gate.audit.command import AuditArgs, run_audit_command

    settings = _load(args.config)
    if settings is None:
        return 2
    audit_args = AuditArgs(args.token_file, args.out, args.format, args.concurrency, args.warm)
    return _run(run_audit_command(settings, audit_args))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        settings = _load(args.config)
        if settings is None or _tls_problems(settings, args.config):
            return 2
        if args.control_fd is not None:
            return _run(_serve(settings, args.config, control_fd=args.control_fd))
        return _serve_workers(settings, args.config)
    if args.command == "check-config":
        return _check_config(args.file, args.against)
    if args.command == "explain":
        return _explain(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "health":
        return _health(args)
    if args.command == "audit":
        return _audit(args)
    from gate.demo import run_demo

    return _run(run_demo(sys.stdout))
