"""DESIGN §6 the shared tier: `gate serve` replicas sharing one real redis-server.

Two (or more) gate processes in front of one sandbox upstream, with
``acceptance.shared_url`` pointing at a redis-server these tests start on a
free loopback port and stop by PID. ``negative_ttl_s`` is long here, so that
a replica's cached 'not confirmed' can only turn into 'accepted' through the
tier (pub/sub), never by expiring.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartRedis, Upstream
from tests.contract.conftest import Served, ServeGate
from tests.redis_server import RedisServer
from tests.support import (
    CONTACT_EMAIL,
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    metric,
    order,
    orders_path,
)

_BOUND_S = 20.0
C2 = "c2000000-0000-4000-8000-000000000002"
C3 = "c3000000-0000-4000-8000-000000000003"


def _extra(url: str) -> str:
    return f'[acceptance]\nshared_url = "{url}"\nnegative_ttl_s = 60\n'


async def _replicas(serve_gate: ServeGate, redis: RedisServer, count: int = 2) -> list[Served]:
    replicas = [await serve_gate(extra=_extra(redis.url)) for _ in range(count)]
    for served in replicas:
        await served.wait_for_output('"shared_tier_up"')
    return replicas


async def _order(
    session: aiohttp.ClientSession, served: Served, customer: str = CUSTOMER
) -> tuple[int, str | None]:
    url = served.proxy_url + orders_path(customer)
    async with session.post(url, json=order(), headers=auth(PARTNER_A)) as response:
        await response.read()
        return response.status, response.headers.get("X-Gate-Decision")


async def _confirm(session: aiohttp.ClientSession, served: Served, customer: str) -> int:
    url = served.proxy_url + agreements_path(customer)
    async with session.post(url, json=confirmation(), headers=auth(PARTNER_A)) as response:
        await response.read()
        return response.status


async def _inspect(
    session: aiohttp.ClientSession, served: Served, customer: str = CUSTOMER
) -> dict[str, Any] | None:
    url = f"{served.admin_url}/admin/acceptance/{PARTNER_A}/{customer}"
    async with session.get(url) as response:
        doc: dict[str, Any] = await response.json()
        return doc if response.status == 200 else None


async def _metrics(session: aiohttp.ClientSession, served: Served) -> str:
    async with session.get(f"{served.admin_url}/metrics") as response:
        return await response.text()


async def _until(check: Callable[[], Awaitable[bool]], bound_s: float = _BOUND_S) -> None:
    """Wait (bounded) until ``check`` holds; a bound, never a timed assertion."""
    async with asyncio.timeout(bound_s):
        while not await check():  # noqa: ASYNC110 - another process's state has no event
            await asyncio.sleep(0.02)


def _lookups(upstream: Upstream) -> int:
    return len(upstream.sandbox.calls("GET", "/agreements"))


async def _learns_accepted(
    session: aiohttp.ClientSession, served: Served, customer: str = CUSTOMER
) -> None:
    async def accepted() -> bool:
        entry = await _inspect(session, served, customer)
        return entry is not None and entry["status"] == "accepted"

    await _until(accepted)


async def test_a_confirmation_through_one_replica_reaches_the_other_at_once(
    serve_gate: ServeGate, upstream: Upstream, start_redis: StartRedis
) -> None:
    """§6: a confirmation through A is published; B, which had cached 'not confirmed', allows."""
    redis = await start_redis()
    a, b = await _replicas(serve_gate, redis)
    async with aiohttp.ClientSession() as session:
        assert await _order(session, b) == (403, "blocked")
        assert (await _inspect(session, b) or {})["status"] == "not_accepted"
        assert await _confirm(session, a, CUSTOMER) == 201
        await _learns_accepted(session, b)  # pub/sub: B's 'not confirmed' is good for 60 s
        assert (await _inspect(session, b) or {})["source"] == "confirmation"
        looked = _lookups(upstream)
        assert await _order(session, b) == (201, "allowed")
        assert _lookups(upstream) == looked == 1  # B's own lookup before the confirmation only


async def test_a_drop_on_one_replica_is_applied_by_every_replica(
    serve_gate: ServeGate, upstream: Upstream, start_redis: StartRedis
) -> None:
    """§5/§6: DELETE /admin/acceptance on A forgets the pair in Redis and in B; B looks up again."""
    redis = await start_redis()
    a, b = await _replicas(serve_gate, redis)
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    async with aiohttp.ClientSession() as session:
        assert await _order(session, a) == (201, "allowed")

        async def in_redis() -> bool:
            return await redis.client.exists(f"gate:acceptance:{PARTNER_A}/{CUSTOMER}") == 1

        await _until(in_redis)
        assert await _order(session, b) == (201, "allowed")
        assert _lookups(upstream) == 1  # B was answered by the shared tier
        assert (await _inspect(session, b) or {})["source"] == "agreement"
        url = f"{a.admin_url}/admin/acceptance/{PARTNER_A}/{CUSTOMER}"
        async with session.delete(url) as response:
            assert response.status == 204

        async def forgotten_by_b() -> bool:
            return await _inspect(session, b) is None

        await _until(forgotten_by_b)
        assert not await in_redis()
        assert await _order(session, b) == (201, "allowed")
        assert _lookups(upstream) == 2  # B asked the upstream again


async def test_concurrent_cold_misses_across_replicas_cost_one_upstream_lookup_per_pair(
    serve_gate: ServeGate, upstream: Upstream, start_redis: StartRedis
) -> None:
    """§6: misses for one pair on A and B at once: one holds the fleet lock, the other waits."""
    redis = await start_redis()
    a, b = await _replicas(serve_gate, redis)
    customers = (CUSTOMER, C2, C3)
    for customer in customers:
        upstream.sandbox.accept(PARTNER_A, customer)
    upstream.sandbox.knobs.agreements_delay_s = 0.5  # the lookups overlap
    async with aiohttp.ClientSession() as session:
        calls = [_order(session, g, c) for c in customers for g in (a, b) for _ in range(3)]
        answers = await asyncio.gather(*calls)
        assert set(answers) == {(201, "allowed")}
        per_pair = [r.path for r in upstream.sandbox.calls("GET", "/agreements")]
        assert sorted(per_pair) == sorted(agreements_path(c) for c in customers)
        shared = [metric(await _metrics(session, g), "gate_acceptance_lookups_total",
                         result="shared") for g in (a, b)]  # fmt: skip
        assert sum(shared) >= len(customers) * 3  # the waiters' calls were answered by the tier


async def test_a_cached_pair_costs_no_redis_command(
    serve_gate: ServeGate, upstream: Upstream, start_redis: StartRedis
) -> None:
    """§6: a hit in the process's own cache never touches Redis (INFO commandstats unchanged)."""
    redis = await start_redis()
    (a,) = await _replicas(serve_gate, redis, count=1)
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    async with aiohttp.ClientSession() as session:
        assert await _order(session, a) == (201, "allowed")

        async def in_redis() -> bool:
            return await redis.client.exists(f"gate:acceptance:{PARTNER_A}/{CUSTOMER}") == 1

        await _until(in_redis)
        await asyncio.sleep(0.1)  # let the lookup's write (SET, PUBLISH, lock release) land
        before = await redis.calls()
        assert before.get("get", 0) >= 1 and before.get("set", 0) >= 1  # the count sees gate's
        for _ in range(20):
            assert await _order(session, a) == (201, "allowed")
        after = await redis.calls()
    assert after == before
    assert _lookups(upstream) == 1


async def test_redis_killed_and_restarted_changes_no_decision(
    serve_gate: ServeGate, upstream: Upstream, start_redis: StartRedis
) -> None:
    """§6: Redis gone: right 201/403 from own caches and direct lookups, one log line; then back."""
    redis = await start_redis()
    a, b = await _replicas(serve_gate, redis)
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    async with aiohttp.ClientSession() as session:
        assert await _order(session, a) == (201, "allowed")
        assert await _order(session, b) == (201, "allowed")
        errors_before = [await _errors(session, g) for g in (a, b)]
        marks = [len(g.output()) for g in (a, b)]
        await redis.kill()
        for served in (a, b):
            await served.wait_for_output('"shared_tier_down"')
        upstream.sandbox.accept(PARTNER_A, C3)
        expected = {CUSTOMER: (201, "allowed"), C2: (403, "blocked"), C3: (201, "allowed")}
        for _ in range(4):
            for served in (a, b):
                for customer, answer in expected.items():
                    assert await _order(session, served, customer) == answer
        for served, before, mark in zip((a, b), errors_before, marks, strict=True):
            assert await _errors(session, served) > before
            assert served.output()[mark:].count('"shared_tier_down"') == 1  # not one per call
        await redis.start()  # the same port
        for served, mark in zip((a, b), marks, strict=True):
            await _until(functools.partial(_logged_up, served, mark))
        assert await _confirm(session, a, C2) == 201
        await _learns_accepted(session, b, C2)  # B cached C2 'not confirmed' while Redis was down
        looked = _lookups(upstream)
        assert await _order(session, b, C2) == (201, "allowed")
        assert _lookups(upstream) == looked


async def _errors(session: aiohttp.ClientSession, served: Served) -> float:
    text = await _metrics(session, served)
    operations = ("get", "lock", "set", "publish", "subscribe")
    return sum(metric(text, "gate_shared_cache_errors_total", operation=op) for op in operations)


async def _logged_up(served: Served, mark: int) -> bool:
    return '"shared_tier_up"' in served.output()[mark:]


_TLS = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.mark.parametrize(
    ("password", "tls"),
    [
        pytest.param("s3cret-Redis-pw", False, id="password"),
        pytest.param("s3cret-Redis-pw", True, id="tls-and-password", marks=_TLS),
    ],
)
async def test_password_and_tls_urls_work_and_the_password_is_never_logged(
    serve_gate: ServeGate, upstream: Upstream, start_redis: StartRedis, password: str, tls: bool
) -> None:
    """§6: redis://:pw@ and rediss:// (requirepass, TLS) carry confirmations; logs mask the pw."""
    redis = await start_redis(password=password, tls=tls)
    a, b = await _replicas(serve_gate, redis)
    async with aiohttp.ClientSession() as session:
        assert await _order(session, b) == (403, "blocked")
        assert await _confirm(session, a, CUSTOMER) == 201
        await _learns_accepted(session, b)
        assert await _order(session, b) == (201, "allowed")
    await redis.kill()
    for served in (a, b):
        await served.wait_for_output('"shared_tier_down"')
    for served in (a, b):
        logs = served.output() + served.stderr.read_text()
        assert password not in logs
        assert CONTACT_EMAIL not in logs
        assert ":***@127.0.0.1" in logs  # the URL is logged, masked
