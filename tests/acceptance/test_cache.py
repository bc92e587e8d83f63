"""gate.acceptance.cache: per-state TTLs, stale-if-error, LRU bound (DESIGN §3 acceptance)."""

from __future__ import annotations

import pytest

from gate.acceptance.cache import PairCache, source_of_flags, why_of_flags
from gate.core.policy import State


class Clock:
    """A clock the test moves by hand (monotonic and wall together)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, limit: int = 10, negative: float = 5.0) -> PairCache:
    return PairCache(
        limit,
        positive_ttl_s=60,
        negative_ttl_s=negative,
        stale_if_error_s=100,
        clock=clock,
        wall=lambda: clock.now + 1_700_000_000,
    )


@pytest.mark.parametrize(
    ("state", "after", "fresh"),
    [
        pytest.param(State.ACCEPTED, 59.9, State.ACCEPTED, id="accepted-within-ttl"),
        pytest.param(State.ACCEPTED, 60.0, None, id="accepted-ttl-over"),
        pytest.param(State.NOT_ACCEPTED, 4.9, State.NOT_ACCEPTED, id="not-accepted-within"),
        pytest.param(State.NOT_ACCEPTED, 5.0, None, id="not-accepted-over"),
    ],
)
def test_fresh_follows_the_ttl_of_the_state(
    state: State, after: float, fresh: State | None
) -> None:
    """§3 positive_ttl_s / negative_ttl_s: a pair is trusted for its state's TTL, no longer."""
    clock = Clock()
    cache = make(clock)
    cache.put("p/c", state, "lookup")
    clock.now += after
    assert cache.fresh("p/c") is fresh


def test_accepted_pair_is_kept_for_stale_if_error_then_gone() -> None:
    """§3 stale_if_error_s: past its TTL an accepted pair is still kept, then dropped."""
    clock = Clock()
    cache = make(clock)
    cache.put("p/c", State.ACCEPTED, "confirmation")
    clock.now += 150
    entry = cache.get("p/c")
    assert entry is not None
    assert (entry.state, entry.source, entry.ttl) == (State.ACCEPTED, "confirmation", 60)
    assert entry.cached_at == pytest.approx(1000.0 + 1_700_000_000, abs=0.01)
    clock.now += 11
    assert cache.get("p/c") is None
    assert len(cache) == 0


def test_a_zero_negative_ttl_stores_nothing() -> None:
    """§3 negative_ttl_s = 0: a 'not confirmed' answer is never trusted, so never stored."""
    cache = make(Clock(), negative=0)
    cache.put("p/c", State.NOT_ACCEPTED, "lookup")
    assert len(cache) == 0


def test_the_least_recently_used_pair_goes_first() -> None:
    """§3 max_entries: beyond the bound the pair unused for longest is dropped (LRU)."""
    clock = Clock()
    cache = make(clock, limit=3)
    for key in ("a/1", "a/2", "a/3"):
        cache.put(key, State.ACCEPTED, "lookup")
    assert cache.fresh("a/1") is State.ACCEPTED  # used: now the most recent
    cache.put("a/4", State.ACCEPTED, "lookup")
    assert [key for key, _ in cache.items()] == ["a/3", "a/1", "a/4"]
    assert cache.get("a/2") is None


def test_an_older_pair_keeps_its_age() -> None:
    """§3 snapshot_path: a pair loaded with an age expires as if it had stayed cached."""
    clock = Clock()
    cache = make(clock)
    cache.put("p/c", State.ACCEPTED, "lookup", age_s=50)
    clock.now += 9
    assert cache.fresh("p/c") is State.ACCEPTED
    clock.now += 2
    assert cache.fresh("p/c") is None


def test_pop_says_whether_it_dropped_something() -> None:
    """§5 DELETE /admin/acceptance: a drop answers whether the pair was cached."""
    cache = make(Clock())
    cache.put("p/c", State.ACCEPTED, "lookup")
    assert cache.pop("p/c") is True
    assert cache.pop("p/c") is False


@pytest.mark.parametrize("why", ["", "no_agreement", "type_not_counted", "before_accepted_since"])
def test_a_pair_not_accepted_keeps_why_its_lookup_said_no(why: str) -> None:
    """A cache hit's refusal names the same reason as the lookup's (13605 data[0].reason)."""
    cache = make(Clock())
    cache.put("p/c", State.NOT_ACCEPTED, "none", why=why)
    flags = cache.fresh_flags("p/c")
    assert cache.fresh("p/c") is State.NOT_ACCEPTED
    assert why_of_flags(flags) == why
    entry = cache.get("p/c")
    assert entry is not None and entry.source == "lookup"  # the why bits are not a source


@pytest.mark.parametrize(
    ("source", "expected"),
    [("agreement", "agreement"), ("direct", "direct"), ("confirmation", "confirmation")],
)
def test_an_accepted_pair_keeps_its_source_and_has_no_why(source: str, expected: str) -> None:
    cache = make(Clock())
    cache.put("p/c", State.ACCEPTED, source, why="no_agreement")  # ignored when accepted
    flags = cache.fresh_flags("p/c")
    assert (source_of_flags(flags), why_of_flags(flags)) == (expected, "")
