"""gate.acceptance.store: the own cache, single-flight lookups, records, snapshots, 429 holds.

The real ``AcceptanceStore`` over a real ``UpstreamPool`` to the sandbox
Partner Center on a loopback port; its clock is a parameter, so TTLs and
Retry-After holds pass without waiting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from yarl import URL

from gate import __version__
from gate.acceptance.lookup import compile_rules
from gate.acceptance.store import AcceptanceStore, Outcome
from gate.config import AcceptanceSettings, PolicySettings
from gate.core.policy import State
from gate.http.upstream import UpstreamPool
from gate.metrics import Metrics
from tests.conftest import Upstream
from tests.support import CUSTOMER, PARTNER_A, PARTNER_B, auth, metric

RULES = compile_rules(PolicySettings())
OTHER = "d00dfeed-1234-4321-abcd-0123456789ab"  # a second customer
WALL = 1_800_000_000.0  # the store's wall clock in these tests (2027)


class Clock:
    """The store's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


MakeStore = Callable[..., AcceptanceStore]


@pytest.fixture
async def make_store(upstream: Upstream) -> AsyncIterator[MakeStore]:
    """Stores over one pool to the sandbox; closed (and the pool) after the test."""
    pool = UpstreamPool(URL(upstream.url), limit=8, connect_timeout=2, read_timeout=5)
    made: list[AcceptanceStore] = []

    def make(
        clock: Clock | None = None, metrics: Metrics | None = None, **settings: Any
    ) -> AcceptanceStore:
        store = AcceptanceStore(
            AcceptanceSettings(**settings), pool, "", metrics or Metrics(__version__),
            clock=clock or Clock(), wall=lambda: WALL,
        )  # fmt: skip
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    pool.close()


def lookup(
    store: AcceptanceStore, partner: str = PARTNER_A, customer: str = CUSTOMER
) -> Awaitable[Outcome]:
    return store.lookup(partner, customer, auth(partner)["Authorization"], "corr-1", RULES)


def agreement_calls(upstream: Upstream) -> int:
    return len(upstream.sandbox.calls("GET", "/agreements"))


# -- peek and lookup ---------------------------------------------------------------


async def test_peek_misses_until_a_lookup_confirms_then_hits(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """R3: an unknown pair is not in the cache; a confirmed lookup is, without awaiting."""
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    store = make_store()
    assert store.peek(PARTNER_A, CUSTOMER) is None
    looked = await lookup(store)
    assert (looked.state, looked.cache, looked.source) == (State.ACCEPTED, "miss", "agreement")
    hit = store.peek(PARTNER_A, CUSTOMER)
    assert hit is not None
    assert (hit.state, hit.cache, hit.source) == (State.ACCEPTED, "hit", "agreement")
    assert store.peek(PARTNER_B, CUSTOMER) is None  # pairs are per partner
    sent = upstream.sandbox.calls("GET", "/agreements")[0]
    assert sent.headers["Authorization"] == auth(PARTNER_A)["Authorization"]
    assert sent.headers["MS-CorrelationId"] == "corr-1"


async def test_a_not_accepted_answer_is_cached_only_for_the_negative_ttl(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """R3: 'not confirmed' is re-asked after negative_ttl_s; a confirmation then shows."""
    clock = Clock()
    store = make_store(clock, negative_ttl_s=5, positive_ttl_s=3600)
    looked = await lookup(store)
    assert (looked.state, looked.why) == (State.NOT_ACCEPTED, "no_agreement")
    hit = store.peek(PARTNER_A, CUSTOMER)
    assert hit is not None and hit.state is State.NOT_ACCEPTED
    clock.now += 6
    assert store.peek(PARTNER_A, CUSTOMER) is None
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    assert (await lookup(store)).state is State.ACCEPTED


async def test_concurrent_lookups_for_one_pair_share_one_upstream_call(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """Single flight: N callers missing the same pair at once cost one lookup."""
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    upstream.sandbox.knobs.agreements_delay_s = 0.05  # the lookup is still out when all ask
    store = make_store()
    outcomes = await asyncio.gather(*(lookup(store) for _ in range(20)))
    assert {(o.state, o.cache) for o in outcomes} == {(State.ACCEPTED, "miss")}
    assert agreement_calls(upstream) == 1
    await lookup(store, customer=OTHER)  # another pair is another lookup
    assert agreement_calls(upstream) == 2


async def test_a_caller_that_leaves_does_not_cancel_the_shared_lookup(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """The lookup runs as the store's task: the first caller's cancellation spares the others."""
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    upstream.sandbox.knobs.agreements_delay_s = 0.05
    store = make_store()
    first = asyncio.ensure_future(lookup(store))
    second = asyncio.ensure_future(lookup(store))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).state is State.ACCEPTED
    assert agreement_calls(upstream) == 1
    assert store.peek(PARTNER_A, CUSTOMER) is not None


async def test_a_failed_lookup_is_not_cached_but_a_confirmed_pair_stays_stale(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """Failures are never cached; a confirmation past its TTL survives them (stale-if-error)."""
    clock, metrics = Clock(), Metrics(__version__)
    store = make_store(clock, metrics, positive_ttl_s=10, stale_if_error_s=100)
    upstream.sandbox.knobs.agreements_status = 500
    failed = await lookup(store, customer=OTHER)
    assert (failed.state, failed.cache) == (State.UNKNOWN, "error")
    assert store.peek(PARTNER_A, OTHER) is None
    upstream.sandbox.knobs.agreements_status = None
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    await lookup(store)
    clock.now += 11  # past the positive TTL: asked again, and the upstream fails
    upstream.sandbox.knobs.agreements_status = 500
    assert store.peek(PARTNER_A, CUSTOMER) is None
    stale = await lookup(store)
    assert (stale.state, stale.cache) == (State.ACCEPTED, "stale")
    text = generate_latest(metrics.registry).decode()
    assert metric(text, "gate_acceptance_stale_total") == 1


async def test_a_denied_lookup_is_relayed_and_not_cached(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """The caller's own token refused (401): the answer to relay, and nothing cached."""
    token = auth(PARTNER_A)["Authorization"].partition(" ")[2]
    upstream.sandbox.knobs.rejected_tokens = frozenset({token})
    store = make_store()
    denied = await lookup(store)
    assert denied.state is State.UNKNOWN
    assert denied.denied is not None and denied.denied.status == 401
    assert store.peek(PARTNER_A, CUSTOMER) is None


# -- 429: the partner is held back -------------------------------------------------


async def test_a_429_holds_the_partners_lookups_for_its_retry_after(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """§2 throttling: no further lookup for that partner until Retry-After has passed."""
    clock = Clock()
    store = make_store(clock)
    knobs = upstream.sandbox.knobs
    knobs.throttled_partners, knobs.agreements_retry_after = frozenset({PARTNER_A}), "30"
    throttled = await lookup(store)
    assert (throttled.state, throttled.cache, throttled.retry_after) == (
        State.UNKNOWN,
        "throttled",
        30.0,
    )
    clock.now += 10
    held = await lookup(store, customer=OTHER)  # any customer of that partner
    assert (held.cache, held.retry_after) == ("throttled", 20.0)
    assert agreement_calls(upstream) == 1
    assert (await lookup(store, PARTNER_B)).state is State.NOT_ACCEPTED  # other partners ask
    knobs.throttled_partners = frozenset()
    clock.now += 21
    assert (await lookup(store)).cache == "miss"
    assert agreement_calls(upstream) == 3


async def test_a_429_without_retry_after_holds_for_retry_after_s(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """A 429 that says nothing readable holds for acceptance.retry_after_s."""
    store = make_store(retry_after_s=7)
    upstream.sandbox.knobs.throttled_partners = frozenset({PARTNER_A})
    assert (await lookup(store)).retry_after == 7.0


# -- record and snapshots ----------------------------------------------------------


async def test_record_confirms_the_pair_at_once_and_tells_the_others(
    upstream: Upstream, make_store: MakeStore
) -> None:
    """R5: a confirmation that went through is accepted from now on, with no lookup."""
    store = make_store()
    told: list[tuple[str, str]] = []
    store.on_record = lambda partner, customer: told.append((partner, customer))
    await lookup(store)  # not accepted, cached
    store.record(PARTNER_A, CUSTOMER)
    hit = store.peek(PARTNER_A, CUSTOMER)
    assert hit is not None
    assert (hit.state, hit.source) == (State.ACCEPTED, "confirmation")
    store.record(PARTNER_A, OTHER, told=True)  # another worker's record: not told on again
    assert told == [(PARTNER_A, CUSTOMER)]
    assert agreement_calls(upstream) == 1


async def test_a_snapshot_round_trip_keeps_confirmed_pairs_only(
    upstream: Upstream, make_store: MakeStore, tmp_path: Path
) -> None:
    """A restart re-asks nothing it knew confirmed: saved, loaded with source, not refusals."""
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    first = make_store()
    await lookup(first)  # accepted by agreement
    first.record(PARTNER_B, CUSTOMER)  # accepted by confirmation
    await lookup(first, customer=OTHER)  # not accepted: never saved
    snapshot = tmp_path / "pairs.jsonl"
    assert first.save(snapshot) == 2
    second = make_store()
    assert second.load(snapshot) == 2
    by_agreement, by_confirmation = (
        second.peek(PARTNER_A, CUSTOMER),
        second.peek(PARTNER_B, CUSTOMER),
    )
    assert by_agreement is not None and by_agreement.source == "agreement"
    assert by_confirmation is not None and by_confirmation.source == "confirmation"
    assert second.peek(PARTNER_A, OTHER) is None
    assert agreement_calls(upstream) == 2  # the second store asked nothing


async def test_loading_skips_unreadable_and_expired_rows(
    make_store: MakeStore, tmp_path: Path
) -> None:
    """A snapshot is an optimisation: bad rows, non-tenant keys and old pairs are left out."""
    rows = [
        {"partner": PARTNER_A.upper(), "customer": CUSTOMER, "cached_at": WALL - 10},
        {"partner": PARTNER_B, "customer": CUSTOMER, "cached_at": WALL - 10_000},  # too old
        {"partner": "a/b", "customer": CUSTOMER, "cached_at": WALL},
        {"partner": PARTNER_B, "cached_at": WALL},
    ]
    snapshot = tmp_path / "pairs.jsonl"
    snapshot.write_text("\n".join([*map(json.dumps, rows), "not json"]) + "\n")
    store = make_store(positive_ttl_s=100, stale_if_error_s=100)
    assert store.load(snapshot) == 1
    entry = store.inspect(PARTNER_A, CUSTOMER)  # keys are lowercased
    assert entry is not None and entry.state is State.ACCEPTED
    assert store.inspect(PARTNER_B, CUSTOMER) is None
