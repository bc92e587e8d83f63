"""DESIGN §3 load shedding and §5 drain: bounded lookups, a bounded cache, SIGTERM under load.

Every call is accounted for (``tests.contract.load.Caller``): what the
client was answered, and, by each order's MS-CorrelationId, whether the
sandbox received it. Waits are bounded; nothing measures time.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

from yarl import URL

from tests.conftest import Gate, StartGate, Upstream
from tests.contract.conftest import ServeGate
from tests.contract.load import Caller, closing
from tests.support import PARTNER_A, metric

_BOUND_S = 20.0


def _customers(count: int, block: int = 0) -> list[str]:
    return [f"c0ffee00-{block:04d}-4000-8000-{n:012d}" for n in range(count)]


def _port(gate: Gate) -> int:
    port = gate.client.server.port
    assert port is not None
    return port


def _placed(upstream: Upstream) -> Counter[str]:
    """How many times each order's correlation id reached the upstream."""
    return Counter(r.headers.get("MS-CorrelationId", "") for r in upstream.sandbox.calls("POST"))


async def test_a_storm_of_lookups_is_bounded_by_max_concurrent_lookups(
    start_gate: StartGate,
) -> None:
    """§3 max_concurrent_lookups: 200 unconfirmed customers at once have at most 4 lookups
    in flight, none asked twice; the excess waits up to lookup_timeout_s, then gets 503 with
    Retry-After."""
    # One upstream call per lookup (no direct-status call after the agreements): a lookup then
    # times out in the queue, not halfway through its calls, which the last bound counts on.
    gate = await start_gate(
        acceptance={"max_concurrent_lookups": 4, "lookup_timeout_s": 1, "retry_after_s": 2},
        policy={"direct_acceptance": False},
    )
    sandbox = gate.upstream.sandbox
    sandbox.knobs.agreements_delay_s = 0.25
    customers = _customers(200)
    with closing([Caller(_port(gate)) for _ in customers]) as callers:
        async with asyncio.timeout(_BOUND_S):  # the excess is shed, never left hanging
            calls = await asyncio.gather(
                *(caller.call("order", c) for caller, c in zip(callers, customers, strict=True))
            )
    answers = [call.response for call in calls]
    assert all(answer is not None for answer in answers)
    statuses = Counter(answer.status for answer in answers if answer is not None)
    assert set(statuses) == {403, 503}, statuses  # looked up in time, or shed
    for answer in answers:
        assert answer is not None and answer.headers["X-Gate-Decision"] == "blocked"
        if answer.status == 503:
            assert json.loads(answer.body)["errorName"] == "AcceptanceStatusUnavailable"
            assert answer.headers["Retry-After"] == "2"
    assert 1 <= sandbox.agreements_peak <= 4
    # No customer is asked about twice. (A lookup that gets its slot late is cut by its own
    # lookup_timeout_s mid-call: under load, with callers arriving spread out, that can happen
    # more than once per slot, so the calls are not bounded by the 403s plus the slots.)
    asked = Counter(r.path for r in sandbox.calls("GET", "/agreements"))
    assert asked and max(asked.values()) == 1, asked.most_common(3)
    assert len(asked) >= statuses[403]
    assert sandbox.calls("POST", "/orders") == []
    text = await gate.metrics()
    assert metric(text, "gate_acceptance_lookups_total", result="error") == statuses[503]


async def test_the_cache_never_holds_more_than_max_entries(start_gate: StartGate) -> None:
    """§3 max_entries: 1000 customers through a cache of 100: the gauge never shows over 100."""
    gate = await start_gate(acceptance={"max_entries": 100})
    customers = _customers(1000)
    seen: list[float] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.append(metric(await gate.metrics(), "gate_acceptance_cache_entries"))
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch())
    try:
        with closing([Caller(_port(gate)) for _ in range(25)]) as callers:

            async def run(caller: Caller, mine: list[str]) -> None:
                for customer in mine:
                    call = await caller.call("order", customer)
                    assert call.response is not None and call.response.status == 403

            async with asyncio.timeout(60):
                await asyncio.gather(
                    *(run(caller, customers[i::25]) for i, caller in enumerate(callers))
                )
    finally:
        done.set()
        await watcher
    seen.append(metric(await gate.metrics(), "gate_acceptance_cache_entries"))
    print(f"cache gauge: {len(seen)} samples, max {max(seen)}, last {seen[-1]}")
    assert len(seen) > 5 and max(seen) <= 100
    assert seen[-1] == 100
    assert len(gate.upstream.sandbox.calls("GET", "/agreements")) == 1000


async def test_sigterm_under_load_loses_no_accepted_call(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§5 SIGTERM: calls in flight finish (each order reached the upstream once), new
    connections are refused, no unanswered order was placed, and the gate exits 0 in time."""
    hot, cold = _customers(1, 1), _customers(200, 2)
    for customer in hot + cold:
        upstream.sandbox.accept(PARTNER_A, customer)
    served = await serve_gate()
    port = URL(served.proxy_url).port
    assert port is not None
    upstream.sandbox.knobs.delay_s = 0.5  # every order takes a while upstream
    upstream.sandbox.knobs.agreements_delay_s = 0.3  # and a new pair's lookup too
    signalled = asyncio.Event()

    async def load(caller: Caller, index: int) -> None:
        for turn in range(1000):
            customer = hot[0] if index % 2 else cold[(index * 50 + turn) % len(cold)]
            kind = "read" if turn % 3 == 2 else "order"
            await caller.call(kind, customer)
            if caller.refused:
                return
            if signalled.is_set() and caller.calls[-1].response is None:
                await asyncio.sleep(0.05)  # the gate closed us: try a new connection

    with closing([Caller(port) for _ in range(16)]) as callers:
        running = [asyncio.ensure_future(load(c, i)) for i, c in enumerate(callers)]
        try:
            async with asyncio.timeout(_BOUND_S):
                while len(upstream.sandbox.calls("POST")) < 40:  # noqa: ASYNC110 - a list
                    await asyncio.sleep(0.02)
            signalled.set()
            signal_at = asyncio.get_running_loop().time()
            served.signal(signal.SIGTERM)
            async with asyncio.timeout(_BOUND_S):
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
    code = await served.wait_exit(bound_s=10 + 5)  # shutdown_grace_s is 10 (serve_toml)
    calls = [call for caller in callers for call in caller.calls]
    answered = [call for call in calls if call.response is not None]
    unanswered = [call for call in calls if call.response is None]
    in_flight = [c for c in answered if c.sent_at < signal_at < (c.answered_at or 0)]
    placed = _placed(upstream)
    print(
        f"drain: {len(calls)} calls, {len(answered)} answered ({len(in_flight)} in flight at "
        f"SIGTERM), {len(unanswered)} not answered (closed or refused after it)"
    )
    assert code == 0
    assert all(caller.refused for caller in callers)  # new connections were refused at the end
    for call in answered:
        assert call.response is not None
        expected = 201 if call.kind == "order" else 200
        assert call.response.status == expected, (call, call.response.body)
        if call.kind == "order":
            assert placed[call.correlation] == 1, call  # reached the upstream exactly once
    for call in unanswered:
        assert placed[call.correlation] == 0, call  # nobody was told, so nothing was placed
    assert any(call.kind == "order" for call in in_flight), "no order was in flight at SIGTERM"
    for call in in_flight:
        assert call.response is not None
        assert call.response.headers["Connection"].lower() == "close"
