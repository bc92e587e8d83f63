"""The acceptance store: the process's own cache, single-flight lookups, and confirmations.

The cache is ``gate.acceptance.cache.PairCache`` (bounded, LRU, per-state TTLs).
A miss asks the upstream's agreements endpoint with the caller's own
credentials; concurrent misses for one pair share a single lookup, which
runs as a task owned by the store so a caller that goes away cannot cancel
it for the others. Confirmed pairs are trusted for ``positive_ttl_s`` and,
while lookups fail, for ``stale_if_error_s`` more; a 'not confirmed' answer
never for longer than ``negative_ttl_s``. Failures are never cached.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from gate.acceptance.cache import Entry, PairCache
from gate.config import AcceptanceSettings
from gate.core import body
from gate.core.policy import State
from gate.errors import GateError
from gate.http.forward import Fetched, fetch
from gate.http.upstream import UpstreamPool
from gate.metrics import Metrics

__all__ = ["AcceptanceStore", "Entry", "Outcome"]

_MCA = "microsoftcloudagreement"
_MCA_QUERY = "?agreementType=MicrosoftCloudAgreement"
_Key = str  # "partner/customer": a tenant id holds no '/'


def _key(partner: str, customer: str) -> _Key:
    return f"{partner}/{customer}"


class Outcome(NamedTuple):
    """The answer for one call: the state, where it came from, and a denial to relay."""

    state: State
    cache: str  # "hit" | "miss" | "error"
    denied: Fetched | None = None


@dataclass(frozen=True, slots=True)
class _Looked:
    outcome: Outcome
    authorization: str


_HIT_ACCEPTED = Outcome(State.ACCEPTED, "hit")
_HIT_NOT_ACCEPTED = Outcome(State.NOT_ACCEPTED, "hit")


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
    ) -> None:
        self._settings = settings
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
        self._inflight: dict[_Key, asyncio.Task[_Looked]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        metrics.watch_cache(lambda: len(self._cache))
        self.on_record: Callable[[str, str], None] | None = None  # workers: tell the others
        self._hits = metrics.lookups["hit"]

    # -- the hot path -------------------------------------------------------

    def peek(self, partner: str, customer: str) -> Outcome | None:
        """A fresh cached answer, without awaiting anything."""
        state = self._cache.fresh(f"{partner}/{customer}")
        if state is None:
            return None
        self._hits.inc()
        return _HIT_ACCEPTED if state is State.ACCEPTED else _HIT_NOT_ACCEPTED

    async def lookup(
        self, partner: str, customer: str, authorization: str, correlation: str | None
    ) -> Outcome:
        """Ask the upstream, sharing one lookup among concurrent callers for the pair."""
        key = _key(partner, customer)
        task = self._inflight.get(key)
        if task is None:
            task = self._spawn(self._lookup(key, authorization, correlation), key)
        looked = await asyncio.shield(task)
        if looked.outcome.denied is not None and looked.authorization != authorization:
            looked = await self._lookup(key, authorization, correlation)  # not our denial
        self._metrics.lookups[looked.outcome.cache].inc()
        return looked.outcome

    async def read_subscription(self, path: str, authorization: str) -> Any:
        """The current subscription (for a seat change's quantity), or None when unreadable."""
        headers = {"Authorization": authorization, "Accept": "application/json"}
        try:
            fetched = await fetch(self._pool, path, headers, self._settings.lookup_timeout_s)
            return body.parse(fetched.body) if fetched.status == 200 else None
        except GateError:
            return None

    def record(self, partner: str, customer: str, *, told: bool = False) -> None:
        """A confirmation went through: the pair is accepted from now on.

        ``told``: another worker recorded it and told us, so it is not told on again.
        """
        self._store(_key(partner, customer), State.ACCEPTED, "confirmation")
        if not told and self.on_record is not None:
            self.on_record(partner, customer)

    # -- operators ----------------------------------------------------------

    def inspect(self, partner: str, customer: str) -> Entry | None:
        return self._cache.get(_key(partner, customer))

    def drop(self, partner: str, customer: str) -> bool:
        return self._cache.pop(_key(partner, customer))

    def __len__(self) -> int:
        return len(self._cache)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

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
                source = "confirmation" if row.get("source") == "confirmation" else "lookup"
                self._cache.put(_key(partner, customer), State.ACCEPTED, source, age)
                loaded += 1
        return loaded

    # -- inside -------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, _Looked], key: _Key) -> asyncio.Task[_Looked]:
        task = asyncio.get_running_loop().create_task(coro, name=f"acceptance-lookup:{key}")
        self._inflight[key] = task
        self._tasks.add(task)

        def _done(finished: asyncio.Task[_Looked]) -> None:
            self._tasks.discard(finished)
            if self._inflight.get(key) is finished:
                del self._inflight[key]

        task.add_done_callback(_done)
        return task

    async def _lookup(self, key: _Key, authorization: str, correlation: str | None) -> _Looked:
        customer = key.partition("/")[2]
        target = f"{self._prefix}/v1/customers/{customer}/agreements{_MCA_QUERY}"
        headers = {"Authorization": authorization, "Accept": "application/json"}
        if correlation:
            headers["MS-CorrelationId"] = correlation
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.lookup_timeout_s), self._slots:
                fetched = await fetch(self._pool, target, headers, self._settings.lookup_timeout_s)
        except (GateError, TimeoutError):
            return _Looked(self._failed(key), authorization)
        finally:
            self._metrics.lookup_duration.observe(time.perf_counter() - started)
        return _Looked(self._judge(key, fetched), authorization)

    def _judge(self, key: _Key, fetched: Fetched) -> Outcome:
        if fetched.status in (401, 403):
            return Outcome(State.UNKNOWN, "miss", denied=fetched)
        if fetched.status == 404:
            return Outcome(self._store(key, State.NOT_ACCEPTED, "lookup"), "miss")
        if fetched.status != 200:
            return self._failed(key)
        try:
            listed = _lists_mca(body.parse(fetched.body))
        except GateError:  # a repeated key: the answer cannot be trusted either way
            return self._failed(key)
        if listed is None:
            return self._failed(key)
        state = State.ACCEPTED if listed else State.NOT_ACCEPTED
        return Outcome(self._store(key, state, "lookup"), "miss")

    def _failed(self, key: _Key) -> Outcome:
        entry = self._cache.get(key)
        if entry is not None and entry.state is State.ACCEPTED:
            return Outcome(State.ACCEPTED, "error")  # stale-if-error: never withdrawn
        return Outcome(State.UNKNOWN, "error")

    def _store(self, key: _Key, state: State, source: str) -> State:
        if state is State.NOT_ACCEPTED and self._cache.fresh(key) is State.ACCEPTED:
            return State.ACCEPTED  # a confirmation landed while this lookup was in flight
        self._cache.put(key, state, source)
        return state


def _lists_mca(doc: Any) -> bool | None:
    """Whether an agreements answer lists an MCA; None when it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return None
    return any(
        isinstance(item, dict)
        and isinstance(kind := item.get("type", item.get("agreementtype")), str)
        and kind.lower() == _MCA
        for item in doc["items"]
    )
