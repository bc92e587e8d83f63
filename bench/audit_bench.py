"""How long `gate audit` takes for a large partner against the sandbox, and what bounds it.

The sandbox Partner Center runs in this process with N customers (a share of
them confirmed by an agreement, a share by the customer's own acceptance,
the rest not: those cost two lookups each, the agreements then the direct
status); `gate audit` (the installed console script) runs as a child with
its default concurrency unless --concurrency is given. ``--latency-ms``
delays every agreements answer, as a real Partner Center lookup takes time.

    .venv/bin/python bench/audit_bench.py [--customers 10000] [--latency-ms 0 100]

Prints wall time, customers per second and the most lookups the sandbox
answered at once; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from gate import sandbox

PARTNER = "11111111-aaaa-4aaa-8aaa-111111111111"
GATE = str(Path(sys.executable).with_name("gate"))


def _files(scratch: Path, port: int) -> tuple[Path, Path]:
    config, token = scratch / "gate.toml", scratch / "token"
    config.write_text(f'[upstream]\nurl = "http://127.0.0.1:{port}"\n')
    token.write_text(sandbox.make_token(PARTNER))
    return config, token


async def _one(customers: int, latency_ms: float, concurrency: int | None) -> None:
    sb = sandbox.Sandbox()
    for n, customer in enumerate(sb.listing.add_many(PARTNER, customers)):
        if n % 4 < 2:
            sb.accept(PARTNER, customer, sandbox.MCA, "2025-01-01T00:00:00Z")
        elif n % 4 == 2:
            sb.sign_directly(customer)
    sb.knobs.agreements_delay_s = latency_ms / 1000
    runner = web.AppRunner(sandbox.create_app(sb), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as scratch:
        config, token = _files(Path(scratch), port)
        argv = [GATE, "audit", "--config", str(config), "--token-file", str(token)]
        argv += ["--out", str(Path(scratch, "report.csv"))]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        started = time.perf_counter()
        child = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
        _, err = await child.communicate()
        took = time.perf_counter() - started
    await runner.cleanup()
    lines = [line for line in err.decode().splitlines() if "lookups at once" in line]
    if not lines:
        raise SystemExit(err.decode())
    at_once = lines[0]
    print(
        f"{customers:>6} customers  latency {latency_ms:>5.0f} ms  "
        f"{at_once.rsplit(', ', 1)[1]:<20} exit {child.returncode}  {took:7.2f} s  "
        f"{customers / took:7.0f} customers/s  sandbox peak {sb.agreements_peak} at once  "
        f"{len(sb.received)} calls"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 100.0])
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()
    for latency in args.latency_ms:
        asyncio.run(_one(args.customers, latency, args.concurrency))


if __name__ == "__main__":
    main()
