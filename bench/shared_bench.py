"""What the shared tier (acceptance.shared_url, DESIGN §6) saves on cold misses, and costs on hits.

1. Cold caches: N pairs, each asked for at once on two `gate serve` replicas,
   in front of the sandbox Partner Center (agreements answered after a delay,
   as a real lookup takes time). Counts the upstream's agreements lookups,
   without Redis (each replica looks up alone) and with it (one per pair).
2. A cached pair: wrk drives gated orders for one warm pair through one
   replica, with and without shared_url; the replica's CPU (utime+stime)
   over the calls it answered is its cost per call, and Redis's INFO
   commandstats before and after shows what the hits sent to Redis.

    .venv/bin/python bench/shared_bench.py [--pairs 200] [--seconds 5]

Needs redis-server and wrk (`scripts/ensure-debian redis-server wrk`). Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gate import sandbox
from tests.redis_server import RedisServer

PARTNER = "11111111-aaaa-4aaa-8aaa-111111111111"
BODY = '{"lineItems":[{"lineItemNumber":0,"offerId":"X","quantity":1}]}'
_TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Replica:
    def __init__(self, directory: Path, upstream: str, shared_url: str) -> None:
        self.proxy, self.admin = _free_port(), _free_port()
        self.config = directory / f"gate-{self.proxy}.toml"
        extra = f'shared_url = "{shared_url}"\n' if shared_url else ""
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.proxy}"\n'
            f'[admin]\nlisten = "127.0.0.1:{self.admin}"\n'
            f'[upstream]\nurl = "{upstream}"\n[log]\nlevel = "warning"\n'
            f"[acceptance]\nnegative_ttl_s = 60\n{extra}"
        )
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Replica:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "gate", "serve", "--config", str(self.config),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        async with aiohttp.ClientSession() as session, asyncio.timeout(20):
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{self.admin}/readyz") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def _orders(session: aiohttp.ClientSession, port: int, customer: str) -> int:
    headers = {"Authorization": f"Bearer {sandbox.make_token(PARTNER)}"}
    url = f"http://127.0.0.1:{port}/v1/customers/{customer}/orders"
    async with session.post(url, data=BODY, headers=headers) as response:
        await response.read()
        return response.status


async def cold(sb: sandbox.Sandbox, upstream: str, redis: RedisServer | None, pairs: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="shared-bench-"))
    url = redis.url if redis else ""
    replicas = [await Replica(directory, upstream, url).start() for _ in range(2)]
    try:
        customers = [f"c{i:07d}-0000-4000-8000-{os.getpid():012d}" for i in range(pairs)]
        for customer in customers:
            sb.accept(PARTNER, customer)
        sb.received.clear()
        async with aiohttp.ClientSession() as session:
            statuses = await asyncio.gather(
                *(_orders(session, r.proxy, c) for c in customers for r in replicas)
            )
        lookups = len(sb.calls("GET", "/agreements"))
        label = "with Redis   " if redis else "without Redis"
        print(f"  {label}: {pairs} pairs x 2 replicas -> {lookups} upstream lookups "
              f"({lookups / pairs:.2f} per pair; answers {sorted(set(statuses))})")  # fmt: skip
    finally:
        for replica in replicas:
            await replica.stop()


async def hits(upstream: str, redis: RedisServer | None, seconds: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="shared-bench-"))
    replica = await Replica(directory, upstream, redis.url if redis else "").start()
    customer = "c0ffee00-1234-4321-abcd-0123456789ab"
    try:
        async with aiohttp.ClientSession() as session:
            await _orders(session, replica.proxy, customer)  # warm: one lookup
        await asyncio.sleep(0.2)
        script = directory / "orders.lua"
        script.write_text(
            f"wrk.method = \"POST\"\nwrk.body = '{BODY}'\n"
            f'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {sandbox.make_token(PARTNER)}"\n'
        )
        before = await redis.calls() if redis else {}
        assert replica.process is not None
        cpu = _cpu_s(replica.process.pid)
        wrk = await asyncio.create_subprocess_exec(
            "wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script),
            f"http://127.0.0.1:{replica.proxy}/v1/customers/{customer}/orders",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out = (await wrk.communicate())[0].decode()
        used = _cpu_s(replica.process.pid) - cpu
        after = await redis.calls() if redis else {}
        match = re.search(r"(\d+) requests in", out)
        done = int(match[1]) if match else 0
        sent = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        label = "with shared_url   " if redis else "without shared_url"
        print(f"  {label}: {done} cached gated calls, {used * 1e6 / max(done, 1):.0f} µs CPU "
              f"per call" + (f"; Redis commands during the run: {sent or 'none'}" if redis
                             else ""))  # fmt: skip
    finally:
        await replica.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--lookup-delay", type=float, default=0.2)
    args = parser.parse_args()
    if not shutil.which("redis-server") or not shutil.which("wrk"):
        sys.exit("needs redis-server and wrk: scripts/ensure-debian redis-server wrk")
    sb = sandbox.Sandbox()
    sb.knobs.agreements_delay_s = args.lookup_delay
    runner = web.AppRunner(sandbox.create_app(sb), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    redis = await RedisServer(Path(tempfile.mkdtemp(prefix="shared-bench-redis-"))).start()
    try:
        print(f"1. cold caches (agreements answered after {args.lookup_delay} s)")
        await cold(sb, upstream, None, args.pairs)
        await redis.client.flushall()
        await cold(sb, upstream, redis, args.pairs)
        sb.knobs.agreements_delay_s = 0.0
        print(f"2. a cached pair, wrk 16 connections for {args.seconds} s (gate process CPU)")
        for _ in range(2):
            await hits(upstream, None, args.seconds)
            await hits(upstream, redis, args.seconds)
    finally:
        await redis.close()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
