"""A whole check's cost, over sockets: HTTP decision service vs gRPC ext_authz service.

Run through ``bench/decision_bench.py --checks`` (see its docstring). `gate serve`
runs with both decision services, pinned alone on CPU 1 (two CPUs or more), in
front of the sandbox (one lookup, then the pair is cached); the client runs here
on CPU 0. Prints checks/s, the gate's CPU µs per check (utime + stime) and its user CPU µs
alone (utime: the Python side, without the kernel's socket work) for each. Asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from servers import Server, free_port, tree_cpu_seconds, wait_ready

from gate import sandbox

PARTNER = "11111111-aaaa-4aaa-8aaa-111111111111"
CUSTOMER = "c0ffee00-1234-4321-abcd-0123456789ab"
TOKEN = (
    "Bearer eyJhbGciOiAibm9uZSJ9."
    "eyJ0aWQiOiAiMTExMTExMTEtYWFhYS00YWFhLThhYWEtMTExMTExMTExMTExIn0.sig"
)
BODY = b'{"lineItems":[{"lineItemNumber":0,"offerId":"CFQ7TTC0LH18:0001","quantity":5}]}'
PATH = f"/v1/customers/{CUSTOMER}/orders"
METHOD = "/envoy.service.auth.v3.Authorization/Check"
IN_FLIGHT = 16
_PIN = len(os.sched_getaffinity(0)) >= 2


def check_request() -> Any:
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.raw_body = "POST", PATH, BODY
    http.headers.update({"authorization": TOKEN, "content-type": "application/json",
                         "x-envoy-auth-partial-body": "false"})  # fmt: skip
    return request


async def drive(calls: int, one: Callable[[], Awaitable[None]]) -> float:
    """``calls`` checks, IN_FLIGHT at a time; returns the seconds it took."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return time.perf_counter() - started


async def measure(name: str, pid: int, calls: int, one: Callable[[], Awaitable[None]]) -> None:
    await drive(min(2000, calls), one)  # warm-up
    user0, sys0 = tree_cpu_seconds(pid)
    seconds = await drive(calls, one)
    user1, sys1 = tree_cpu_seconds(pid)
    cpu_us = ((user1 - user0) + (sys1 - sys0)) / calls * 1e6
    user_us = (user1 - user0) / calls * 1e6  # the Python side alone: issue 27's target
    print(f"{name:<34} {calls / seconds:9,.0f} checks/s  {cpu_us:7.1f} CPU µs/check "
          f"{user_us:7.1f} user µs/check (server)")  # fmt: skip


async def http_checks(port: int, pid: int, calls: int) -> None:
    url = f"http://127.0.0.1:{port}/authz{PATH}"
    headers = {"Authorization": TOKEN, "Content-Type": "application/json",
               "x-envoy-auth-partial-body": "false"}  # fmt: skip
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(url, data=BODY, headers=headers) as answer:
                await answer.read()
                assert answer.status == 200, answer.status

        await measure("HTTP service (ext_authz HTTP)", pid, calls, one)


async def grpc_checks(name: str, port: int, pid: int, calls: int, allowed: bool = True) -> None:
    request = check_request()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=CheckResponse.FromString,
        )

        async def one() -> None:
            answer = await call(request)
            assert answer.status.code == 0 or not allowed, answer

        await measure(name, pid, calls, one)


_STACK_SERVER = """
import asyncio, sys
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse, OkHttpResponse
from google.rpc.status_pb2 import Status
ANSWER = CheckResponse(status=Status(code=0), ok_response=OkHttpResponse())
stack, port = sys.argv[1], int(sys.argv[2])

async def grpcio_main():
    import grpc
    async def check(request, context):
        return ANSWER
    handler = grpc.method_handlers_generic_handler("envoy.service.auth.v3.Authorization", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=CheckRequest.FromString,
            response_serializer=CheckResponse.SerializeToString)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

async def grpclib_main():
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server
    class Authorization:
        async def check(self, stream):
            await stream.recv_message()
            await stream.send_message(ANSWER)
        def __mapping__(self):
            return {"/envoy.service.auth.v3.Authorization/Check": Handler(
                self.check, Cardinality.UNARY_UNARY, CheckRequest, CheckResponse)}
    server = Server([Authorization()])
    await server.start("127.0.0.1", port)
    await server.wait_closed()

try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
asyncio.run(grpcio_main() if stack == "grpcio" else grpclib_main())
"""


async def stacks(calls: int, work: Path) -> None:
    """A bare Check (fixed answer) on each gRPC stack: what the stack itself costs."""
    for stack in ("grpcio", "grpclib"):
        if stack == "grpclib":
            try:
                import grpclib  # noqa: F401
            except ImportError:
                print("grpclib                            not installed: pip install grpclib")
                continue
        port = free_port()
        server = Server.start(
            stack, [sys.executable, "-c", _STACK_SERVER, stack, str(port)],
            cpus="1" if _PIN else None, log=work / f"{stack}.log", port=port,
        )  # fmt: skip
        try:
            await asyncio.sleep(1.0)
            await grpc_checks(f"bare Check on {stack}", port, server.pid, calls)
        finally:
            server.stop()


async def run_checks(calls: int, *, stacks_too: bool = False) -> None:
    partner_center = sandbox.Sandbox()
    partner_center.accept(PARTNER, CUSTOMER)  # the one lookup finds it; the rest are cache hits
    runner = web.AppRunner(sandbox.create_app(partner_center))
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    if _PIN:
        os.sched_setaffinity(0, {0})
    ports = {name: free_port() for name in ("proxy", "admin", "http", "grpc")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = work / "gate.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{ports["proxy"]}"\nshutdown_grace_s = 1\n'
            f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{upstream_port}"\n'
            f'[authz]\nlisten = "127.0.0.1:{ports["http"]}"\npath_prefix = "/authz"\n'
            f'grpc_listen = "127.0.0.1:{ports["grpc"]}"\n[log]\nlevel = "warning"\n'
        )
        gate = Server.start(
            "gate", [sys.executable, "-P", "-m", "gate", "serve", "--config", str(config)],
            cpus="1" if _PIN else None, log=work / "gate.log", port=ports["proxy"],
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", gate.proc, "gate")
            print(f"{calls} cached gated orders per service, {IN_FLIGHT} in flight, "
                  f"gate {'pinned on CPU 1' if _PIN else 'unpinned'}")  # fmt: skip
            await http_checks(ports["http"], gate.pid, calls)
            await grpc_checks("gRPC service (ext_authz gRPC)", ports["grpc"], gate.pid, calls)
            if stacks_too:
                await stacks(calls, work)
        finally:
            gate.stop()
            await runner.cleanup()
