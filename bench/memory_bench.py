"""Memory of the acceptance cache: 1,000,000 confirmed pairs in at most 256 MB more RSS.

Builds the gate's own ``AcceptanceStore`` (default settings: ``max_entries``
is 1,000,000) inside a running event loop and records that many distinct
(partner, customer) pairs, as lowercase GUID strings made fresh for each
call the way the gate gets them from requests (so the cache keeps its own
copies, as in production). Prints RSS before and after and the difference,
and PASS/MISS against the limit; it exits non-zero only if it cannot run.

    .venv/bin/python bench/memory_bench.py [--pairs 1000000] [--limit-mb 256] [--partners 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
import uuid
from pathlib import Path

from yarl import URL

# The gate's modules may move (gate/acceptance.py -> gate/acceptance/store.py, gate/upstream.py
# -> gate/http/upstream.py, ...): every import of the gate is here, so a move is one line.
try:
    from gate.acceptance.store import AcceptanceStore
except ImportError:
    from gate.acceptance import AcceptanceStore
try:
    from gate.http.upstream import UpstreamPool
except ImportError:
    from gate.upstream import UpstreamPool
try:
    from gate.ops.metrics import Metrics
except ImportError:
    from gate.metrics import Metrics
from gate import __version__
from gate.config import Settings


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


async def measure(pairs: int, partners: int) -> tuple[int, int, int, float]:
    settings = Settings()
    if settings.acceptance.max_entries < pairs:
        print(
            f"note: acceptance.max_entries is {settings.acceptance.max_entries}: the LRU "
            f"keeps that many of the {pairs:,} pairs"
        )
    pool = UpstreamPool(
        URL(settings.upstream.url),
        limit=settings.upstream.max_connections,
        connect_timeout=settings.upstream.connect_timeout_s,
        read_timeout=settings.upstream.read_timeout_s,
    )
    store = AcceptanceStore(settings.acceptance, pool, "", Metrics(__version__))
    rng = random.Random(20181107)
    tenants = [uuid.UUID(int=rng.getrandbits(128), version=4).int for _ in range(partners)]
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for i in range(pairs):
        partner = str(uuid.UUID(int=tenants[i % partners]))  # a new string per call
        store.record(partner, _guid(rng))
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    held = len(store)
    await store.close()
    pool.close()
    return before, after, held, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--limit-mb", type=float, default=256)
    parser.add_argument("--partners", type=int, default=100, help="distinct partner tenants")
    args = parser.parse_args(argv)
    before, after, held, elapsed = asyncio.run(measure(args.pairs, args.partners))
    delta = after - before
    mb = 2**20
    print(
        f"pairs recorded: {args.pairs:,} ({args.partners} partners), held: {held:,}, "
        f"{elapsed:.1f} s ({elapsed * 1e6 / args.pairs:.1f} µs per record)"
    )
    print(
        f"RSS before: {before / mb:.1f} MB  after: {after / mb:.1f} MB  "
        f"delta: {delta / mb:.1f} MB ({delta / max(held, 1):.0f} bytes per pair)"
    )
    verdict = "PASS" if delta <= args.limit_mb * mb else "MISS"
    print(
        f"{verdict}  {args.pairs:,} cached pairs in {delta / mb:.1f} MB more RSS "
        f"(target <= {args.limit_mb:.0f} MB)"
    )
    print(f"memory_delta_mb={delta / mb:.1f} bytes_per_pair={delta / max(held, 1):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
