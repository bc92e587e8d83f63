"""gate.acceptance.shared: what the tier writes to a real Redis, and a Redis that is not there.

In-process gates (``start_gate``) on a real redis-server (``start_redis``);
the multi-replica behaviour is proven over `gate serve` processes in
tests/contract/test_shared.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.conftest import Gate, StartGate, StartRedis
from tests.contract.conftest import free_port
from tests.support import (
    CONTACT_EMAIL,
    CONTACT_FIRST,
    CONTACT_LAST,
    CONTACT_PHONE,
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    log_lines,
    metric,
    order,
    orders_path,
)

_KEY = re.compile(r"gate:(acceptance|lock):[0-9a-f-]{36}/[0-9a-f-]{36}")
_PERSONAL = (CONTACT_EMAIL, CONTACT_FIRST, CONTACT_LAST, CONTACT_PHONE)
C2 = "c2000000-0000-4000-8000-000000000002"


async def _order(gate: Gate, customer: str = CUSTOMER) -> int:
    async with gate.client.post(
        orders_path(customer), json=order(), headers=auth(PARTNER_A)
    ) as response:
        return response.status


async def _until_written(client: Any, key: str, bound_s: float = 10.0) -> None:
    async with asyncio.timeout(bound_s):
        while not await client.exists(key):  # noqa: ASYNC110 - Redis has no event to await
            await asyncio.sleep(0.01)


async def test_redis_holds_tenant_ids_states_and_times_only(
    start_gate: StartGate, start_redis: StartRedis
) -> None:
    """§6: keys, values and events name tenants, states and times; never a name or an email."""
    redis = await start_redis()
    gate = await start_gate(acceptance={"shared_url": redis.url})
    pubsub = redis.client.pubsub()
    await pubsub.subscribe("gate:events:0")
    assert await _order(gate, C2) == 403  # a lookup: 'not_accepted' written
    async with gate.client.post(
        agreements_path(), json=confirmation(), headers=auth(PARTNER_A)
    ) as response:
        assert response.status == 201
    await _until_written(redis.client, f"gate:acceptance:{PARTNER_A}/{CUSTOMER}")
    await _until_written(redis.client, f"gate:acceptance:{PARTNER_A}/{C2}")
    stored: dict[str, Any] = {}
    async for key in redis.client.scan_iter("*"):
        assert _KEY.fullmatch(key.decode()), key
        if key.startswith(b"gate:acceptance:"):
            stored[key.decode()] = json.loads(await redis.client.get(key))
    events: list[dict[str, Any]] = []
    for _ in range(50):  # bounded: the subscribe confirmation, then both events
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            events.append(json.loads(message["data"]))
        elif {event["op"] for event in events} == {"answer", "accepted"}:
            break
    await pubsub.aclose()
    assert stored[f"gate:acceptance:{PARTNER_A}/{CUSTOMER}"].keys() == {
        "status", "source", "cached_at",
    }  # fmt: skip
    assert stored[f"gate:acceptance:{PARTNER_A}/{CUSTOMER}"]["status"] == "accepted"
    assert stored[f"gate:acceptance:{PARTNER_A}/{C2}"]["status"] == "not_accepted"
    assert {event["op"] for event in events} == {"answer", "accepted"}
    for event in events:
        assert event.keys() == {"op", "key", "status", "source", "cached_at", "origin"}
    everything = json.dumps([stored, events])
    assert not [word for word in _PERSONAL if word in everything]


async def test_answers_are_written_with_their_state_ttl(
    start_gate: StartGate, start_redis: StartRedis
) -> None:
    """§6: SET ... PX: a confirmed pair lives positive_ttl_s in Redis, 'not confirmed' negative."""
    redis = await start_redis()
    gate = await start_gate(
        acceptance={"shared_url": redis.url, "positive_ttl_s": 600, "negative_ttl_s": 7}
    )
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    assert await _order(gate) == 201
    assert await _order(gate, C2) == 403
    accepted, refused = (
        f"gate:acceptance:{PARTNER_A}/{CUSTOMER}",
        f"gate:acceptance:{PARTNER_A}/{C2}",
    )
    await _until_written(redis.client, accepted)
    await _until_written(redis.client, refused)
    assert 0 < await redis.client.pttl(accepted) <= 600_000
    assert 0 < await redis.client.pttl(refused) <= 7_000
    assert not await redis.client.exists(f"gate:lock:{PARTNER_A}/{CUSTOMER}")  # released


async def test_a_value_written_by_another_replica_answers_without_a_lookup(
    start_gate: StartGate, start_redis: StartRedis
) -> None:
    """§6: a miss asks Redis first; its answer is used (counted as shared); unreadable, skipped."""
    redis = await start_redis()
    gate = await start_gate(acceptance={"shared_url": redis.url})
    value = {"status": "accepted", "source": "confirmation", "cached_at": 1.0e9}
    await redis.client.set(f"gate:acceptance:{PARTNER_A}/{CUSTOMER}", json.dumps(value))
    await redis.client.set(f"gate:acceptance:{PARTNER_A}/{C2}", b"not json")
    assert await _order(gate) == 201  # the sandbox knows nothing: only Redis says accepted
    assert await _order(gate, C2) == 403  # unreadable: asked the upstream, which says no
    assert len(gate.upstream.sandbox.calls("GET", "/agreements")) == 1
    text = await gate.metrics()
    assert metric(text, "gate_acceptance_lookups_total", result="shared") == 1
    assert metric(text, "gate_acceptance_lookups_total", result="miss") == 1


async def test_an_unreachable_redis_changes_no_decision_and_is_logged_once(
    start_gate: StartGate,
) -> None:
    """§6: Redis is never a dependency: nothing listens there, the gate decides as if alone."""
    gate = await start_gate(acceptance={"shared_url": f"redis://127.0.0.1:{free_port()}/0"})
    for _ in range(3):
        assert await _order(gate) == 403
    async with gate.client.post(
        agreements_path(), json=confirmation(), headers=auth(PARTNER_A)
    ) as response:
        assert response.status == 201
    assert await _order(gate) == 201
    text = await gate.metrics()
    assert metric(text, "gate_shared_cache_errors_total", operation="subscribe") >= 1
    assert metric(text, "gate_shared_cache_up") == 0
    down = [line for line in log_lines(gate.logs) if line["event"] == "shared_tier_down"]
    assert len(down) == 1
    assert down[0]["operation"] == "subscribe"
