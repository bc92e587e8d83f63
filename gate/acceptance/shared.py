"""The shared tier: a Redis (or Valkey) server between each process's own cache and the upstream.

DESIGN §6, in lua-resty-mlcache's shape: the store asks its own cache (L1),
then this tier (L2), then the upstream's agreements endpoint (L3). Redis is
an optimisation, never a dependency of a decision: every command is bounded
by ``acceptance.shared_timeout_s``, and a failure (or a slow answer) marks
the tier down, so that until it is back the store decides from its own
cache and direct lookups as if no tier were configured.

What Redis holds (tenant ids, states and times only; never personal data)::

    gate:acceptance:<partner>/<customer>
        {"status": "accepted", "source": "agreement", "cached_at": 1767225600.0}
        (source: agreement | direct | confirmation; "lookup", as the release before
        wrote it, is read as agreement)
        SET ... PX positive_ttl_s ("accepted") or negative_ttl_s ("not_accepted", and NX,
        so that a lookup never overwrites a confirmation that landed meanwhile)
    gate:lock:<partner>/<customer>
        a random token: SET NX PX lookup_timeout_s + shared_timeout_s
    channel gate:events:<db>
        {"op", "key", "status", "source", "cached_at", "origin"}
        op "accepted": a confirmation, applied by every replica; "dropped": an admin drop,
        applied by every replica; "answer": a lock holder's lookup result (status null when
        it found nothing to share), read by the replicas waiting for that pair

One cold pair costs one upstream lookup for the fleet: a process that misses
in Redis takes the pair's lock and looks up; the others wait for its answer
(pub/sub, with a slow poll of the key in case a message is lost) for at most
``lookup_timeout_s``, then look up themselves.

Health: a subscriber task per process holds the pub/sub connection. The
tier is "up" while it is subscribed; a failed command, or the subscription
breaking, makes it "down" (logged once, with the URL's password masked),
and the subscriber reconnects with back-off (0.1 s doubling to 5 s); once
subscribed again the tier is "up" (logged once more). While down, nothing is
sent to Redis: messages published meanwhile are missed (pub/sub keeps none),
so a confirmation made elsewhere is then seen within ``negative_ttl_s``, as
without the tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from structlog.typing import FilteringBoundLogger

from gate.acceptance.cache import PairCache, source_of
from gate.config import AcceptanceSettings, mask_url
from gate.core.policy import State
from gate.metrics import Metrics

__all__ = ["Flight", "Known", "SharedTier", "value_key"]

_T = TypeVar("_T")
_VALUE, _LOCK = "gate:acceptance:", "gate:lock:"
_FAILURES = (RedisError, OSError, TimeoutError)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_START_WAIT_S = 1.0  # start() waits this long for the first subscription, then goes on without
_IDLE_S = 0.25  # the subscriber's longest read, so it notices the tier marked down
_POLL_S = 0.25  # a waiter re-reads the key this often, in case the answer's message was lost
_BACKOFF_S = (0.1, 5.0)  # reconnect: first wait, longest wait


def value_key(key: str) -> str:
    """The Redis key holding a pair's state ("partner/customer" as the store keys it)."""
    return _VALUE + key


class Known(NamedTuple):
    """A pair's state as the fleet knows it."""

    state: State
    source: str  # "agreement" | "direct" | "confirmation"
    age_s: float  # since it was learnt


@dataclass(slots=True)
class Flight:
    """One process's part in a fleet-wide lookup of a pair (see ``SharedTier.flight``)."""

    known: Known | None = None  # the fleet's answer; None: look it up yourself
    found: State | None = None  # set by the caller: what its lookup found, to share
    source: str = "agreement"  # and what confirmed it (agreement | direct)
    lock: str | None = None  # our token while we hold the pair's lock


class SharedTier:
    """The Redis tier of one process: reads, the fleet lock, writes and the event subscriber."""

    def __init__(
        self,
        settings: AcceptanceSettings,
        metrics: Metrics,
        logger: FilteringBoundLogger,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        url = settings.shared_url
        timeout = settings.shared_timeout_s
        self._shown, self._password = mask_url(url), urlsplit(url).password
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=settings.max_concurrent_lookups,
            timeout=None,  # a wait for a connection counts against the command's own bound
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),  # once, at once: a pooled connection Redis has closed
        )
        self._redis: Redis = Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
        db = pool.connection_kwargs.get("db", 0)
        self._channel = f"gate:events:{db}"  # pub/sub ignores db numbers: keep fleets apart
        self._timeout = timeout
        self._ttl_ms = {
            State.ACCEPTED: int(settings.positive_ttl_s * 1000),
            State.NOT_ACCEPTED: int(settings.negative_ttl_s * 1000),
        }
        self._lock_ms = int((settings.lookup_timeout_s + timeout) * 1000)
        self._wait_s = settings.lookup_timeout_s
        self._metrics, self._logger, self._wall = metrics, logger, wall
        self._origin = secrets.token_hex(8)  # this process, so it skips its own events
        self._state = "starting"  # "starting" | "up" | "down"
        self._down_since = 0.0
        self._subscribed = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[Known | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cache: PairCache | None = None

    # -- life ---------------------------------------------------------------

    async def start(self, cache: PairCache) -> None:
        """Subscribe to the fleet's events (applied to ``cache``); wait briefly for Redis."""
        self._cache = cache
        self._spawn(self._subscriber(), "shared-tier-subscriber")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_START_WAIT_S):
                await self._subscribed.wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    # -- the lookup path ----------------------------------------------------

    @contextlib.asynccontextmanager
    async def flight(self, key: str) -> AsyncIterator[Flight]:
        """The fleet's answer for a pair that missed the own cache, or the duty to look it up.

        The caller looks up when ``known`` is None and sets ``found``; on exit
        that state is written to Redis and, if we held the lock, announced to
        the replicas waiting for it.
        """
        flight = Flight()
        if self._state != "up":
            yield flight  # down: on our own, nothing sent
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future  # an answer published from now on reaches us
        try:
            flight.known, flight.lock = await self._join(key, future)
            yield flight
        finally:
            if self._waiting.get(key) is future:
                del self._waiting[key]
        if flight.known is None and (flight.found is not None or flight.lock is not None):
            self._spawn(
                self._share(key, flight.found, flight.lock, flight.source),
                f"shared-tier-share:{key}",
            )

    async def _join(
        self, key: str, future: asyncio.Future[Known | None]
    ) -> tuple[Known | None, str | None]:
        """Redis's answer, or our lock to look up, or neither (wait over, or Redis failing)."""
        redis = self._redis
        known = self._known(await self._command("get", lambda: redis.get(value_key(key))))
        if known is not None:
            return known, None
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self._wait_s
        while self._state == "up":
            got = await self._command("lock", lambda: self._try_lock(key, token))
            if got is None:
                break
            acquired, raw = got
            known = self._known(raw)
            if known is not None or acquired:
                if known is not None and acquired:
                    self._spawn(self._release(key, token), f"shared-tier-release:{key}")
                return known, None if known is not None else token
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break  # the holder is slow or gone: look up ourselves
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _POLL_S)):
                    return await asyncio.shield(future), None  # None: nothing to share
        return None, None

    async def _try_lock(self, key: str, token: str) -> tuple[bool, Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(_LOCK + key, token, nx=True, px=self._lock_ms)
            pipe.get(value_key(key))
            acquired, raw = await pipe.execute()
        return bool(acquired), raw

    async def _share(
        self, key: str, state: State | None, lock: str | None, source: str = "agreement"
    ) -> None:
        """Write a lookup's answer (if any) with its TTL, tell the waiters, free the lock."""
        cached_at = self._wall()
        ttl = self._ttl_ms.get(state, 0) if state is not None else 0
        value = _value(state, source, cached_at) if state is not None else None
        redis = self._redis

        async def write() -> None:
            async with redis.pipeline(transaction=False) as pipe:
                if value is not None and ttl > 0:
                    pipe.set(value_key(key), value, px=ttl, nx=state is State.NOT_ACCEPTED)
                if lock is not None or value is not None:
                    event = self._event("answer", key, state, cached_at, source)
                    pipe.publish(self._channel, event)
                if lock is not None:
                    pipe.eval(_RELEASE, 1, _LOCK + key, lock)
                await pipe.execute()

        await self._command("set", write)

    async def warm(self, key: str, state: State, source: str = "agreement") -> bool:
        """Write a pair's answer found elsewhere (``gate audit --warm``) with the gate's TTL.

        As a lookup's answer: 'not accepted' never overwrites what Redis holds.
        False when the tier is down or the write failed.
        """
        if self._state != "up":
            return False
        await self._share(key, state, None, source if state is State.ACCEPTED else "agreement")
        return self._state == "up"

    async def _release(self, key: str, token: str) -> None:
        await self._command("lock", lambda: self._redis.eval(_RELEASE, 1, _LOCK + key, token))

    # -- confirmations and drops ----------------------------------------------

    def publish_accepted(self, key: str) -> None:
        """A confirmation here: accepted in Redis, and in every replica's own cache at once."""
        if self._state == "up":
            self._spawn(self._announce(key, State.ACCEPTED), f"shared-tier-accepted:{key}")

    def publish_dropped(self, key: str) -> None:
        """An operator's drop here: gone from Redis and from every replica's own cache."""
        if self._state == "up":
            self._spawn(self._announce(key, None), f"shared-tier-dropped:{key}")

    async def _announce(self, key: str, state: State | None) -> None:
        cached_at = self._wall()
        op = "accepted" if state is not None else "dropped"
        redis = self._redis

        async def write() -> None:
            async with redis.pipeline(transaction=False) as pipe:
                if state is None:
                    pipe.delete(value_key(key))
                elif self._ttl_ms[state] > 0:
                    value = _value(state, "confirmation", cached_at)
                    pipe.set(value_key(key), value, px=self._ttl_ms[state])
                pipe.publish(self._channel, self._event(op, key, state, cached_at))
                await pipe.execute()

        await self._command("publish", write)

    def _event(
        self, op: str, key: str, state: State | None, cached_at: float, source: str = ""
    ) -> str:
        doc = {
            "op": op,
            "key": key,
            "status": state.value if state is not None else None,
            "source": "confirmation" if op == "accepted" else source or "agreement",
            "cached_at": cached_at,
            "origin": self._origin,
        }
        return json.dumps(doc, separators=(",", ":"))

    # -- the subscriber -------------------------------------------------------

    async def _subscriber(self) -> None:
        """Apply the fleet's events; on failure mark the tier down and reconnect with back-off."""
        first, longest = _BACKOFF_S
        backoff = first
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    async with asyncio.timeout(self._timeout * 10):  # connect, auth, subscribe
                        await pubsub.subscribe(self._channel)
                        await self._redis.ping()
                    self._up()
                    backoff = first
                    while self._state == "up":
                        message = await pubsub.get_message(timeout=_IDLE_S)
                        if message is not None:
                            self._apply(message.get("data"))
            except _FAILURES as error:
                self._failed("subscribe", error)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, longest)

    def _apply(self, data: Any) -> None:
        """One event from another process: a confirmation, a drop, or an answer we wait for."""
        try:
            doc = json.loads(data)
            op, key = doc["op"], doc["key"]
        except (ValueError, TypeError, KeyError):
            return  # not ours to understand
        cache = self._cache
        if doc.get("origin") == self._origin or not _pair_key(key) or cache is None:
            return
        if op == "dropped":
            cache.pop(key)
            return
        known = self._known_doc(doc)
        if op == "accepted" and known is not None and known.state is State.ACCEPTED:
            cache.put(key, State.ACCEPTED, "confirmation", known.age_s)
        future = self._waiting.get(key)
        if op in ("accepted", "answer") and future is not None and not future.done():
            future.set_result(known)

    # -- health ----------------------------------------------------------------

    async def _command(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T | None:
        """One bounded round trip; None (counted, and the tier marked down) when it fails."""
        if self._state != "up":
            return None
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except _FAILURES as error:
            self._failed(operation, error)
            return None

    def _failed(self, operation: str, error: BaseException) -> None:
        self._metrics.shared_errors[operation].inc()
        if self._state == "down":
            return
        was_up = self._state == "up"
        self._state, self._down_since = "down", time.monotonic()
        self._metrics.shared_up.set(0)
        self._logger.warning(
            "shared_tier_down",
            url=self._shown,
            operation=operation,
            error=self._scrub(error),
            note="deciding from the own cache and direct lookups until Redis is back"
            if was_up
            else "Redis unreachable at start: deciding without it until it is reachable",
        )

    def _up(self) -> None:
        was = self._state
        self._state = "up"
        self._metrics.shared_up.set(1)
        self._subscribed.set()
        if was == "down":
            down_s = round(time.monotonic() - self._down_since, 3)
            self._logger.info("shared_tier_up", url=self._shown, after_s=down_s)
        else:
            self._logger.info("shared_tier_up", url=self._shown)

    def _scrub(self, error: BaseException) -> str:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return text.replace(self._password, "***") if self._password else text

    # -- values ------------------------------------------------------------------

    def _known(self, raw: Any) -> Known | None:
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except (ValueError, TypeError):
            return None
        return self._known_doc(doc) if isinstance(doc, dict) else None

    def _known_doc(self, doc: dict[str, Any]) -> Known | None:
        status, source, cached_at = doc.get("status"), doc.get("source"), doc.get("cached_at")
        if status not in (State.ACCEPTED.value, State.NOT_ACCEPTED.value):
            return None
        if not isinstance(cached_at, int | float):
            return None
        source = source_of(source)  # the current release writes "lookup" for agreement
        return Known(State(status), source, max(0.0, self._wall() - float(cached_at)))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _value(state: State, source: str, cached_at: float) -> str:
    doc = {"status": state.value, "source": source, "cached_at": cached_at}
    return json.dumps(doc, separators=(",", ":"))


def _pair_key(key: Any) -> bool:
    return isinstance(key, str) and key.count("/") == 1 and key == key.lower()
