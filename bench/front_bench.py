"""A whole check in process: the front door and the decision service, without sockets.

Run through ``bench/decision_bench.py --front`` (see its docstring). One
``ProxyProtocol`` of the decision service's ``FrontDoor`` is fed the bytes of
a check again and again, as uvloop would hand them over, and answers into a
transport that only keeps the last write: llhttp, the head, the ``Cycle``,
``gate.authz``, route + decide on a cached gated order, the answer. No
syscall, no client, no other process: what is left is the user CPU a check
costs in the gate, the figure issue 27's target is about (the socket bench,
``--checks``, adds the kernel's and the client's noise). Three checks: Envoy's
HTTP ext_authz (POST with the body, as aiohttp sends it in ``--checks``),
nginx's auth_request (no body), and Envoy's again with the decision line
written (``log.level = info``, the default; ``--checks`` runs at warning).
Prints µs per check, the best of five runs. Asserts nothing.

On a shared machine the figures move with the load; instructions do not:
``valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python
bench/decision_bench.py --front envoy --calls N`` (or ``nginx``, ``line``: one
check alone) at two N, the difference of the totals over 5 times the difference
of the Ns (5 runs of N each, after the same 2,000 to warm up), counts a
check's instructions.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, TextIO

import structlog
from check_bench import BODY, CUSTOMER, PARTNER, PATH, TOKEN
from yarl import URL

from gate.acceptance import AcceptanceStore
from gate.authz import DecisionService
from gate.config import Settings
from gate.core.decide import Decider
from gate.http.protocol import ProxyProtocol
from gate.http.server import FrontDoor
from gate.http.upstream import UpstreamPool
from gate.logs import HotLines
from gate.metrics import Metrics
from gate.runtime import RuntimeHolder, compile_settings

_ENVOY = (
    f"POST /authz{PATH} HTTP/1.1\r\nHost: 127.0.0.1:8181\r\nAuthorization: {TOKEN}\r\n"
    "Content-Type: application/json\r\nx-envoy-auth-partial-body: false\r\nAccept: */*\r\n"
    "Accept-Encoding: gzip, deflate\r\nUser-Agent: Python/3.11 aiohttp/3.9.5\r\n"
    f"Content-Length: {len(BODY)}\r\n\r\n"
).encode() + BODY
_NGINX = (
    f"GET /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Original-Method: POST\r\n"
    f"X-Original-URI: {PATH}\r\nAuthorization: {TOKEN}\r\nContent-Type: application/json\r\n"
    "User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
).encode()
_WARM = 2000


class _Transport:
    """The socket's stand-in: keeps the last answer, so a check that is not allowed shows."""

    last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        raise RuntimeError("the gate closed the check's connection")

    abort = close


def _connection(level: str, stream: TextIO) -> tuple[ProxyProtocol, _Transport]:
    settings = Settings()
    runtime = compile_settings(settings)
    metrics = Metrics("bench")
    pool = UpstreamPool(URL("http://127.0.0.1:9"), limit=1, connect_timeout=1, read_timeout=1)
    store = AcceptanceStore(settings.acceptance, pool, "", metrics)
    store.record(PARTNER, CUSTOMER)  # every check is a cache hit
    decider = Decider(RuntimeHolder(runtime), store, store.read_subscription)
    logger = structlog.get_logger()
    lines = HotLines(level, "json", stream, logger)
    service = DecisionService(decider, "/authz", metrics, lines)
    door = FrontDoor(service.start, settings.server, logger)
    door.date = b"Date: Mon, 07 Dec 2026 10:00:00 GMT\r\n"
    conn = ProxyProtocol(door)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def _per_check(calls: int, request: bytes, level: str) -> float:
    # The log stream as `gate serve` has it when stdout is a file or a pipe: buffered text.
    with open(os.devnull, "w", encoding="utf-8") as stream:
        conn, transport = _connection(level, stream)
        for _ in range(_WARM):
            conn.data_received(request)
        assert transport.last.startswith(b"HTTP/1.1 200 "), transport.last
        runs = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(calls):
                conn.data_received(request)
            runs.append((time.process_time() - started) / calls * 1e6)
    return min(runs)


CHECKS = {
    "envoy": ("Envoy ext_authz HTTP (with body)", _ENVOY, "warning"),
    "nginx": ("nginx auth_request (no body)", _NGINX, "warning"),
    "line": ("Envoy, with the decision line", _ENVOY, "info"),
}


async def front_checks(calls: int, which: str) -> None:
    print(f"a cached gated order, checked in process: best of 5 x {calls} checks")
    for key, (name, request, level) in CHECKS.items():
        if which not in ("all", key):
            continue
        micros = _per_check(calls, request, level)
        print(f"{name:<34} {micros:7.2f} user µs/check (in process, no sockets)")


def run_front(calls: int, which: str = "all") -> None:
    try:
        import uvloop  # the loop `gate serve` runs on (its loop.time() is the protocol's clock)
    except ImportError:
        asyncio.run(front_checks(calls, which))
    else:
        uvloop.run(front_checks(calls, which))
