"""The acceptance store: the process's own cache, single-flight lookups, and confirmations.

The cache is ``gate.acceptance.cache.PairCache`` (bounded, LRU, per-state TTLs).
A miss asks the upstream (``gate.acceptance.lookup``: the agreements, then
the customer's own acceptance) with the caller's own credentials;
concurrent misses for one pair share a single lookup, which runs as a task
owned by the store so a caller that goes away cannot cancel it for the
others. Confirmed pairs are trusted for ``positive_ttl_s`` and,
while lookups fail, for ``stale_if_error_s`` more; a 'not confirmed' answer
never for longer than ``negative_ttl_s``. Failures are never cached. A lookup
answered 429 holds back every lookup for that partner until its
``Retry-After`` has passed (``gate.acceptance.throttle``): meanwhile gated
calls are answered as lookup errors that say how long is left.

With ``acceptance.shared_url`` set, a ``gate.acceptance.shared.SharedTier``
sits between the own cache and the upstream (own cache -> Redis -> lookup):
a miss asks it first, one lookup per pair serves the fleet, and
confirmations and drops reach every replica. The hot path (``peek``) never
touches it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cachetools import TTLCache

from gate.acceptance.cache import (
    ACCEPTED,
    Entry,
    PairCache,
    source_of,
    source_of_flags,
    why_of_flags,
)
from gate.acceptance.lookup import Finding, LookupRules, look_up, request_headers
from gate.acceptance.shared import SharedTier
from gate.acceptance.throttle import Throttle, asked_wait
from gate.acceptance.token import LookupToken, seconds_left
from gate.config import AcceptanceSettings
from gate.core import body
from gate.core.policy import State
from gate.errors import GateError
from gate.http.upstream import Fetched, UpstreamPool, fetch
from gate.metrics import Metrics
from gate.tasks import spawn

__all__ = ["AcceptanceStore", "Entry", "Outcome"]

_Key = str  # "partner/customer": a tenant id holds no '/'


def _key(partner: str, customer: str) -> _Key:
    return f"{partner}/{customer}"


class Outcome(NamedTuple):
    """The answer for one call: the state, where it came from, and a denial to relay.

    ``cache`` (the decision log's field): ``hit``, ``miss``, ``error``, ``stale``
    (a confirmed pair past its TTL kept while the lookup failed) or ``throttled``
    (no lookup: Partner Center throttles the partner for ``retry_after`` more seconds).
    """

    state: State
    cache: str
    denied: Fetched | None = None
    retry_after: float = 0.0
    source: str = ""  # what confirmed: agreement | direct | confirmation ("" when unknown)
    why: str = ""  # a lookup's reason when not confirmed (before_accepted_since, ...)


# gate_acceptance_lookups_total keeps DESIGN's labels: a stale or throttled answer is an error.
_RESULT = {
    "hit": "hit",
    "shared": "shared",
    "miss": "miss",
    "error": "error",
    "stale": "error",
    "throttled": "error",
}


@dataclass(frozen=True, slots=True)
class _Looked:
    outcome: Outcome
    authorization: str


_HIT_ACCEPTED = {
    source: Outcome(State.ACCEPTED, "hit", source=source)
    for source in ("agreement", "direct", "confirmation")
}
_HITS = tuple(  # a cache hit's answer by the pair's flag bits (PairCache.fresh_flags)
    _HIT_ACCEPTED[source_of_flags(flags)]
    if flags & ACCEPTED
    else Outcome(State.NOT_ACCEPTED, "hit", why=why_of_flags(flags))
    for flags in range(8)
)
_PROOF_TTL_S = 3600.0  # a caller's token the upstream took is trusted this long at most


class AcceptanceStore:
    """The per-process cache of acceptance, its lookups and its confirmations."""

    def __init__(
        self,
        settings: AcceptanceSettings,
        pool: UpstreamPool,
        prefix: str,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        shared: SharedTier | None = None,
    ) -> None:
        self._settings = settings
        self._shared = shared
        self._pool = pool
        self._prefix = prefix  # the upstream URL's own path, if it has one
        self._metrics = metrics
        self._clock = clock
        self._wall = wall
        self._cache = PairCache(
            settings.max_entries,
            positive_ttl_s=settings.positive_ttl_s,
            negative_ttl_s=settings.negative_ttl_s,
            stale_if_error_s=settings.stale_if_error_s,
            clock=clock,
            wall=wall,
        )
        self._slots = asyncio.Semaphore(settings.max_concurrent_lookups)
        self._throttle = Throttle(clock=clock)
        token_file = settings.lookup_token_file
        self._token = LookupToken(Path(token_file)) if token_file else None
        # callers' tokens the upstream took (sha256 -> until when), for the token file's use
        self._proofs: TTLCache[bytes, float] = TTLCache(10_000, _PROOF_TTL_S, timer=clock)
        self._inflight: dict[_Key, asyncio.Task[_Looked]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        metrics.watch_cache(lambda: len(self._cache))
        self.on_record: Callable[[str, str], None] | None = None  # workers: tell the others
        self._hits = metrics.lookups["hit"]

    # -- the hot path -------------------------------------------------------

    def peek(self, partner: str, customer: str) -> Outcome | None:
        """A fresh cached answer, without awaiting anything."""
        flags = self._cache.fresh_flags(f"{partner}/{customer}")
        if flags < 0:
            return None
        self._hits.inc()
        return _HITS[flags]

    async def lookup(
        self,
        partner: str,
        customer: str,
        authorization: str,
        correlation: str | None,
        rules: LookupRules,
    ) -> Outcome:
        """Ask the upstream, sharing one lookup among concurrent callers for the pair.

        With ``acceptance.lookup_token_file``, its token asks for its own partner, once
        the caller's own token has shown the upstream it is genuine (``_proven``).
        """
        if self._token is not None:
            own = self._token.authorization_for(partner)
            if own is not None and own != authorization:
                refused = await self._proven(partner, customer, authorization, correlation)
                if refused is not None:
                    self._count(refused)
                    return refused
                authorization = own
        key = _key(partner, customer)
        held = self._throttle.remaining(partner)
        if held:  # Partner Center throttles this partner: do not ask before Retry-After
            outcome = self._failed(key, held)
        else:
            task = self._inflight.get(key)
            if task is None:
                task = self._spawn(self._tiered(key, authorization, correlation, rules), key)
            looked = await asyncio.shield(task)
            if looked.outcome.denied is not None and looked.authorization != authorization:
                looked = await self._lookup(key, authorization, correlation, rules)  # not ours
            outcome = looked.outcome
        self._count(outcome)
        return outcome

    async def _proven(
        self, partner: str, customer: str, authorization: str, correlation: str | None
    ) -> Outcome | None:
        """None when the caller's token may have the file's token look up for it.

        The gate does not verify tokens (the upstream does), so anyone could name
        the file's partner in a forged ``tid`` and have the partner's own token make
        lookups for them: learning which customers are confirmed and spending the
        partner's throttling budget. So the caller's token first makes a call that
        App-only tokens may make, GET /v1/customers/{c}; a token the upstream took is
        remembered until it expires (an hour at most). A 401, 403 or 404 is relayed
        as the upstream gave it; anything else is a lookup error.
        """
        now = self._clock()
        digest = hashlib.sha256(authorization.encode()).digest()
        if self._proofs.get(digest, 0.0) > now:
            return None
        key = _key(partner, customer)
        if held := self._throttle.remaining(partner):
            return self._failed(key, held)
        headers = request_headers(authorization, correlation)
        limit = self._settings.lookup_timeout_s
        target = f"{self._prefix}/v1/customers/{customer}"
        try:
            async with asyncio.timeout(limit), self._slots:
                fetched = await fetch(self._pool, target, headers, limit)
        except (GateError, TimeoutError):
            return self._failed(key)
        if fetched.status == 200:
            self._proofs[digest] = now + seconds_left(authorization, self._wall(), _PROOF_TTL_S)
            return None
        if fetched.status in (401, 403, 404):
            return Outcome(State.UNKNOWN, "miss", denied=fetched)
        if fetched.status == 429:
            return self._held(key, asked_wait(fetched.headers, self._wall()))
        return self._failed(key)

    async def read_subscription(self, path: str, authorization: str) -> Any:
        """The current subscription (for a seat change's quantity), or None when unreadable."""
        headers = request_headers(authorization)
        try:
            fetched = await fetch(self._pool, path, headers, self._settings.lookup_timeout_s)
            return body.parse(fetched.body) if fetched.status == 200 else None
        except GateError:
            return None

    def record(self, partner: str, customer: str, *, told: bool = False) -> None:
        """A confirmation went through: the pair is accepted from now on.

        ``told``: another worker recorded it and told us, so it is not told on again.
        """
        key = _key(partner, customer)
        self._store(key, State.ACCEPTED, "confirmation")
        if not told and self._shared is not None:
            self._shared.publish_accepted(key)
        if not told and self.on_record is not None:
            self.on_record(partner, customer)

    # -- operators ----------------------------------------------------------

    def inspect(self, partner: str, customer: str) -> Entry | None:
        return self._cache.get(_key(partner, customer))

    def drop(self, partner: str, customer: str) -> bool:
        """Forget a pair here (True if it was cached here) and, with a shared tier, everywhere."""
        key = _key(partner, customer)
        if self._shared is not None:
            self._shared.publish_dropped(key)
        return self._cache.pop(key)

    def __len__(self) -> int:
        return len(self._cache)

    async def start(self) -> None:
        """Join the shared tier, when there is one (bounded: Redis is never waited for long)."""
        if self._shared is not None:
            await self._shared.start(self._cache)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._shared is not None:
            await self._shared.close()

    def save(self, path: Path) -> int:
        """Write the confirmed pairs, so a restart does not re-ask for all of them."""
        rows = [
            {"partner": p, "customer": c, "cached_at": e.cached_at, "source": e.source}
            for key, e in self._cache.items()
            if e.state is State.ACCEPTED
            for p, _, c in (key.partition("/"),)
        ]
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # workers share the path
        partial.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        os.replace(partial, path)
        return len(rows)

    def load(self, path: Path) -> int:
        """Read a snapshot back, keeping each pair's age; unreadable rows are skipped."""
        loaded = 0
        wall = self._wall()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                partner, customer = str(row["partner"]).lower(), str(row["customer"]).lower()
                age = max(0.0, wall - float(row["cached_at"]))
            except (ValueError, KeyError, TypeError):
                continue
            if "/" in partner:
                continue  # not a tenant id: never a key
            if age < self._settings.positive_ttl_s + self._settings.stale_if_error_s:
                source = source_of(row.get("source"))  # old snapshots say "lookup"
                self._cache.put(_key(partner, customer), State.ACCEPTED, source, age)
                loaded += 1
        return loaded

    # -- inside -------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, _Looked], key: _Key) -> asyncio.Task[_Looked]:
        task = spawn(coro, f"acceptance-lookup:{key}", self._tasks)
        self._inflight[key] = task

        def _done(finished: asyncio.Task[_Looked]) -> None:
            if self._inflight.get(key) is finished:
                del self._inflight[key]

        task.add_done_callback(_done)
        return task

    async def _tiered(
        self, key: _Key, authorization: str, correlation: str | None, rules: LookupRules
    ) -> _Looked:
        """Own cache missed: the shared tier's answer, else our lookup (shared with the fleet)."""
        if self._shared is None:
            return await self._lookup(key, authorization, correlation, rules)
        async with self._shared.flight(key) as flight:
            if flight.known is not None:
                known = flight.known
                state = self._store(key, known.state, known.source, known.age_s)
                source = known.source if state is State.ACCEPTED else ""
                return _Looked(Outcome(state, "shared", source=source), authorization)
            looked = await self._lookup(key, authorization, correlation, rules)
            outcome = looked.outcome
            if outcome.cache == "miss" and outcome.denied is None:
                flight.found = outcome.state  # a definite answer: worth sharing
                flight.source = outcome.source or "agreement"
            return looked

    async def _lookup(
        self, key: _Key, authorization: str, correlation: str | None, rules: LookupRules
    ) -> _Looked:
        partner, _, customer = key.partition("/")
        limit = self._settings.lookup_timeout_s
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit), self._slots:
                held = self._throttle.remaining(partner)  # a 429 came while this one queued
                if held:
                    return _Looked(self._failed(key, held), authorization)
                finding = await look_up(
                    self._pool, self._prefix, customer, authorization, rules, limit, correlation,
                    wall=self._wall,
                )  # fmt: skip
        except TimeoutError:
            return _Looked(self._failed(key), authorization)
        finally:
            self._metrics.lookup_duration.observe(time.perf_counter() - started)
        return _Looked(self._judged(key, finding), authorization)

    def _judged(self, key: _Key, finding: Finding) -> Outcome:
        """The Outcome of a lookup's Finding: cached when definite, the throttle held on 429."""
        if finding.denied is not None:
            return Outcome(State.UNKNOWN, "miss", denied=finding.denied)
        if finding.throttled:
            return self._held(key, finding.retry_after)
        if finding.state is State.UNKNOWN:
            return self._failed(key)
        state = self._store(key, finding.state, finding.source, why=finding.reason)
        if state is not finding.state:  # a confirmation landed meanwhile
            return Outcome(state, "miss", source="confirmation")
        source = finding.source if state is State.ACCEPTED else ""
        return Outcome(state, "miss", source=source, why=finding.reason)

    def _held(self, key: _Key, asked: float | None) -> Outcome:
        """A 429: hold the partner's lookups for what it asked (else retry_after_s)."""
        wait = self._settings.retry_after_s if asked is None else asked
        return self._failed(key, self._throttle.hold(key.partition("/")[0], wait))

    def _failed(self, key: _Key, throttled: float = 0.0) -> Outcome:
        entry = self._cache.get(key)
        if entry is not None and entry.state is State.ACCEPTED:
            return Outcome(State.ACCEPTED, "stale")  # stale-if-error: never withdrawn
        if throttled > 0:
            return Outcome(State.UNKNOWN, "throttled", retry_after=throttled)
        return Outcome(State.UNKNOWN, "error")

    def _count(self, outcome: Outcome) -> None:
        metrics = self._metrics
        metrics.lookups[_RESULT[outcome.cache]].inc()
        if outcome.cache == "stale":
            metrics.stale.inc()
        elif outcome.cache == "throttled":
            metrics.throttled.inc()

    def _store(
        self, key: _Key, state: State, source: str, age_s: float = 0.0, why: str = ""
    ) -> State:
        if state is State.NOT_ACCEPTED and self._cache.fresh(key) is State.ACCEPTED:
            return State.ACCEPTED  # a confirmation landed while this lookup was in flight
        self._cache.put(key, state, source, age_s, why)
        return state
