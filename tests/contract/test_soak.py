"""Soak (``-m soak``, left out of the default run): a steady mixed load on `gate serve`.

About a minute (``SOAK_SECONDS``) at ``SOAK_RATE`` requests a second from
eight keep-alive connections: 90 % reads, 10 % orders, across accepted and
unaccepted customers, with short TTLs so lookups keep happening. It proves
zero unexpected answers, every order answered 201 placed exactly once (by
its MS-CorrelationId), no blocked order placed, and a flat resident memory
after warm-up; it prints its figures. The rate is a target, not an
assertion: the only bound on time is that at least half the planned calls ran.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics

import pytest

from tests.conftest import Upstream
from tests.contract.conftest import ServeGate
from tests.contract.load import Call, Caller, closing, memory_kib
from tests.support import PARTNER_A

pytestmark = pytest.mark.soak

_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
_RATE = float(os.environ.get("SOAK_RATE", "200"))
_CONNECTIONS = 8
_ACCEPTED = [f"c0ffee00-0001-4000-8000-{n:012d}" for n in range(20)]
_UNACCEPTED = [f"c0ffee00-0002-4000-8000-{n:012d}" for n in range(20)]
_GROWTH_KIB = 10 * 1024


def _expected(call: Call) -> tuple[int, str | None]:
    if call.kind == "read":
        return 200, None
    return (201, "allowed") if call.customer in _ACCEPTED else (403, "blocked")


@pytest.mark.timeout(_SECONDS * 3 + 60)
async def test_steady_mixed_load_is_decided_right_and_memory_stays_flat(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """R1-R4 + §5 under a minute of load: every answer right, every order placed once or never."""
    for customer in _ACCEPTED:
        upstream.sandbox.accept(PARTNER_A, customer)
    served = await serve_gate("[acceptance]\npositive_ttl_s = 5\nnegative_ttl_s = 1\n")
    port = int(served.proxy_url.rsplit(":", 1)[1])
    rng = random.Random(17)
    loop = asyncio.get_running_loop()
    start = loop.time()
    rss: list[tuple[float, int]] = []

    async def drive(caller: Caller, offset: float) -> None:
        interval = _CONNECTIONS / _RATE
        due = start + offset
        while due < start + _SECONDS:
            await asyncio.sleep(max(0.0, due - loop.time()))
            kind = "order" if rng.random() < 0.1 else "read"
            customer = rng.choice(_ACCEPTED + _UNACCEPTED)
            await caller.call(kind, customer)
            due += interval

    async def sample() -> None:
        while loop.time() < start + _SECONDS:
            rss.append((loop.time() - start, memory_kib(served.pid)))
            await asyncio.sleep(1.0)

    with closing([Caller(port) for _ in range(_CONNECTIONS)]) as callers:
        await asyncio.gather(
            sample(),
            *(drive(c, i / _RATE) for i, c in enumerate(callers)),
        )
    calls = [call for caller in callers for call in caller.calls]
    placed: dict[str, int] = {}
    for received in upstream.sandbox.calls("POST", "/orders"):
        key = received.headers.get("MS-CorrelationId", "")
        placed[key] = placed.get(key, 0) + 1
    unexpected = []
    for call in calls:
        status, decision = _expected(call)
        got = call.response
        if got is None or got.status != status or got.headers.get("X-Gate-Decision") != decision:
            unexpected.append(call)
    orders = [c for c in calls if c.kind == "order"]
    allowed = [c for c in orders if c.customer in _ACCEPTED]
    latencies = sorted((c.answered_at or 0) - c.sent_at for c in calls if c.response)
    third = len(rss) // 3
    middle, last = rss[third : 2 * third], rss[2 * third :]
    growth = statistics.mean(v for _, v in last) - statistics.mean(v for _, v in middle)
    print(
        f"\nsoak: {len(calls)} calls in {_SECONDS:.0f} s ({len(calls) / _SECONDS:.0f}/s), "
        f"{len(orders)} orders ({len(allowed)} allowed, {len(orders) - len(allowed)} blocked), "
        f"{len(upstream.sandbox.calls('GET', '/agreements'))} lookups, "
        f"{len(unexpected)} unexpected\n"
        f"soak latency ms: p50 {latencies[len(latencies) // 2] * 1000:.1f}, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f}, max {latencies[-1] * 1000:.1f}\n"
        f"soak VmRSS KiB: first {rss[0][1]}, middle third mean "
        f"{statistics.mean(v for _, v in middle):.0f}, last third mean "
        f"{statistics.mean(v for _, v in last):.0f}, growth {growth:.0f}, "
        f"max {max(v for _, v in rss)}"
    )
    assert unexpected == [], [(c, c.response) for c in unexpected[:5]]
    assert len(calls) >= _SECONDS * _RATE / 2  # the soak did run (a generous bound)
    for call in allowed:
        assert placed.get(call.correlation) == 1, call  # answered 201: placed exactly once
    for call in orders:
        if call.customer in _UNACCEPTED:
            assert call.correlation not in placed, call  # blocked: never placed
    assert sum(placed.values()) == len(allowed)
    assert growth < _GROWTH_KIB, rss
