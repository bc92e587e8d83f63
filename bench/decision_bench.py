"""Micro-benchmark of the decision path: classify + identify + a cache hit, per call.

The issue's target: at most 5 µs a call. This drives the decision core
itself (``gate.core.decide.Decider``) on a gated order whose pair is cached,
with a real request head as the front door builds it, and prints µs per call
for each step and for the whole of route + decide. Asserts nothing.

``--checks`` measures a whole check instead, over sockets: `gate serve` (pinned
alone on CPU 1 when there are two) with both decision services, asked a cached
gated order by a client on CPU 0, 16 in flight; the figure is the gate's CPU
µs per check (utime + stime from /proc, as bench/run counts), for the HTTP
service (aiohttp client, keep-alive) and the gRPC service (grpcio client, one
HTTP/2 channel). ``--stacks`` also times a bare unary Check (fixed answer, no
decision) on grpcio's asyncio server and on grpclib (installed by hand: it is
not a dependency), each in its own pinned process: the gRPC stack's own cost.
Each line gives checks/s, the gate's CPU µs per check and its user CPU alone
(utime: issue 27's target is user CPU).

``--front`` measures a whole HTTP check in process instead (``bench/front_bench.py``):
the decision service's front door fed a check's bytes, no sockets, no client;
user µs per check for an Envoy check, an nginx check and an Envoy check with
its decision line written.

    .venv/bin/python bench/decision_bench.py [--calls 200000]
    .venv/bin/python bench/decision_bench.py --checks [--calls 20000] [--stacks]
    .venv/bin/python bench/decision_bench.py --front [envoy|nginx|line] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from yarl import URL

from gate.acceptance import AcceptanceStore
from gate.config import Settings
from gate.core.classify import classify, normalize, split_target
from gate.core.decide import Decider
from gate.http.head import RequestHead
from gate.http.upstream import UpstreamPool
from gate.metrics import Metrics
from gate.runtime import RuntimeHolder, compile_settings

PARTNER = "11111111-aaaa-4aaa-8aaa-111111111111"
CUSTOMER = "c0ffee00-1234-4321-abcd-0123456789ab"
TOKEN = (
    b"Bearer eyJhbGciOiAibm9uZSJ9."
    b"eyJ0aWQiOiAiMTExMTExMTEtYWFhYS00YWFhLThhYWEtMTExMTExMTExMTExIn0.sig"
)
BODY = b'{"lineItems":[{"lineItemNumber":0,"offerId":"CFQ7TTC0LH18:0001","quantity":5}]}'
PATH = f"/v1/customers/{CUSTOMER}/orders"


def per_call(calls: int, step: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - started) / calls * 1e6


async def main(calls: int) -> None:
    settings = Settings()
    runtime = compile_settings(settings)
    pool = UpstreamPool(URL("http://127.0.0.1:9"), limit=1, connect_timeout=1, read_timeout=1)
    store = AcceptanceStore(settings.acceptance, pool, "", Metrics("bench"))
    store.record(PARTNER, CUSTOMER)
    decider = Decider(RuntimeHolder(runtime), store, store.read_subscription)
    head = RequestHead()
    for name, value in (
        (b"Host", b"gate.example"),
        (b"Authorization", TOKEN),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(BODY)).encode()),
        (b"MS-CorrelationId", b"5c2a2b9e-0000-4000-8000-000000000000"),
    ):
        head.add(name, value)
    gated = decider.route("POST", PATH, head)
    figures = {
        "classify (split, normalise, match)": per_call(
            calls, lambda: classify(runtime.rules, "POST", normalize(split_target(PATH)[0]))
        ),
        "route (classify + trace + exemptions)": per_call(
            calls, lambda: decider.route("POST", PATH, head)
        ),
        "identify (token -> partner, cached)": per_call(
            calls, lambda: decider._partner(runtime, head)
        ),
        "cache hit (store.peek)": per_call(calls, lambda: store.peek(PARTNER, CUSTOMER)),
        "decide (body, identity, hit, policy)": per_call(
            calls,
            lambda: decider.decide(gated, head, BODY),  # type: ignore[arg-type]
        ),
    }

    def whole() -> object:
        routed = decider.route("POST", PATH, head)
        return decider.decide(routed, head, BODY)  # type: ignore[arg-type]

    figures["route + decide: the decision path"] = per_call(calls, whole)
    width = max(map(len, figures))
    for name, micros in figures.items():
        print(f"{name:<{width}}  {micros:6.2f} µs/call")
    decision_path = (
        figures["classify (split, normalise, match)"]
        + figures["identify (token -> partner, cached)"]
        + figures["cache hit (store.peek)"]
    )
    verdict = "PASS" if decision_path <= 5 else "MISS"
    print(f"classify + identify + cache hit: {decision_path:.2f} µs (target <= 5 µs): {verdict}")
    print(f"decision_path_us={decision_path:.2f} route_decide_us={figures[list(figures)[-1]]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--checks", action="store_true", help="whole checks over sockets")
    parser.add_argument("--stacks", action="store_true", help="with --checks: grpcio vs grpclib")
    parser.add_argument(
        "--front", nargs="?", const="all", choices=["all", "envoy", "nginx", "line"],
        help="whole checks in process (all, or one of them)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.front:
        from front_bench import run_front

        run_front(args.calls or 20_000, args.front)
    elif args.checks:
        from check_bench import run_checks  # over sockets: its own module

        asyncio.run(run_checks(args.calls or 20_000, stacks_too=args.stacks))
    else:
        asyncio.run(main(args.calls or 200_000))
