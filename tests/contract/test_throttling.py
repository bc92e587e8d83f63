"""DESIGN §2 throttling: a lookup answered 429 holds that partner's lookups until Retry-After.

The sandbox answers the agreements lookups of ``knobs.throttled_partners``
with 429 and the ``Retry-After`` of ``knobs.agreements_retry_after``. Waits
are bounded; the only sleep is the one that lets a 2-second Retry-After pass.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Gate, StartGate
from tests.support import (
    PARTNER_A,
    PARTNER_B,
    auth,
    decisions,
    metric,
    order,
    orders_path,
)

CUSTOMERS = [f"c0ffee00-0000-4000-8000-{n:012d}" for n in range(12)]


async def _order(gate: Gate, customer: str, partner: str = PARTNER_A) -> Any:
    return await gate.client.post(orders_path(customer), json=order(), headers=auth(partner))


def _lookups(gate: Gate) -> int:
    return len(gate.upstream.sandbox.calls("GET", "/agreements"))


async def _unavailable(response: Any) -> int:
    """Assert a fail-closed 503 and return its Retry-After."""
    assert response.status == 503
    assert response.headers["X-Gate-Decision"] == "blocked"
    body = await response.json()
    assert (body["errorName"], body["source"]) == ("AcceptanceStatusUnavailable", "gate")
    return int(response.headers["Retry-After"])


async def test_a_429_holds_the_partners_lookups_until_retry_after(start_gate: StartGate) -> None:
    """§2: after a 429 no lookup is made for that partner until Retry-After; then they resume."""
    gate = await start_gate(acceptance={"retry_after_s": 1})
    sandbox = gate.upstream.sandbox
    sandbox.knobs.throttled_partners = frozenset({PARTNER_A})
    sandbox.knobs.agreements_retry_after = "2"
    first = await _order(gate, CUSTOMERS[0])
    assert await _unavailable(first) == 2  # the upstream's Retry-After, over retry_after_s
    storm = await asyncio.gather(*(_order(gate, c) for c in CUSTOMERS[1:] * 3))
    waits = [await _unavailable(response) for response in storm]
    assert all(1 <= wait <= 2 for wait in waits), waits  # what is left, rounded up
    assert _lookups(gate) == 1  # 33 gated calls, no storm of lookups
    other = await _order(gate, CUSTOMERS[0], PARTNER_B)  # Partner Center throttles per partner
    assert other.status == 403
    assert (await other.json())["errorName"] == "CustomerAcceptanceRequired"
    assert _lookups(gate) == 2
    assert sandbox.calls("POST", "/orders") == []

    sandbox.knobs.throttled_partners = frozenset()
    sandbox.accept(PARTNER_A, CUSTOMERS[0])
    await asyncio.sleep(2.1)  # the Retry-After has passed
    resumed = await _order(gate, CUSTOMERS[0])
    assert resumed.status == 201
    assert resumed.headers["X-Gate-Decision"] == "allowed"
    assert _lookups(gate) == 3

    text = await gate.metrics()
    assert metric(text, "gate_acceptance_throttled_total") == 1 + len(storm)
    assert metric(text, "gate_acceptance_lookups_total", result="error") == 1 + len(storm)
    caches = [line["cache"] for line in decisions(gate.logs)]
    assert caches == ["throttled"] * (1 + len(storm)) + ["miss", "miss"]
    assert {line["reason"] for line in decisions(gate.logs)[:-2]} == {"lookup_error"}


async def test_a_429_without_retry_after_holds_for_retry_after_s(start_gate: StartGate) -> None:
    """§3 retry_after_s: a 429 that names no time holds the partner for retry_after_s."""
    gate = await start_gate(acceptance={"retry_after_s": 30})
    gate.upstream.sandbox.knobs.throttled_partners = frozenset({PARTNER_A})
    assert await _unavailable(await _order(gate, CUSTOMERS[0])) == 30
    assert await _unavailable(await _order(gate, CUSTOMERS[1])) == 30
    assert _lookups(gate) == 1


async def test_confirmed_pairs_keep_passing_while_the_partner_is_throttled(
    start_gate: StartGate,
) -> None:
    """§2: throttling spares confirmed pairs: fresh ones from the cache, expired ones stale."""
    gate = await start_gate(acceptance={"positive_ttl_s": 0.5})
    sandbox = gate.upstream.sandbox
    fresh, expired, unknown = CUSTOMERS[:3]
    sandbox.accept(PARTNER_A, expired)
    assert (await _order(gate, expired)).status == 201
    await asyncio.sleep(0.6)  # `expired` is past positive_ttl_s, within stale_if_error_s
    sandbox.accept(PARTNER_A, fresh)
    assert (await _order(gate, fresh)).status == 201
    sandbox.knobs.throttled_partners = frozenset({PARTNER_A})
    sandbox.knobs.agreements_retry_after = "60"
    assert await _unavailable(await _order(gate, unknown)) == 60
    looked_up = _lookups(gate)
    for customer in (fresh, expired):
        response = await _order(gate, customer)
        assert response.status == 201
        assert response.headers["X-Gate-Decision"] == "allowed"
    assert _lookups(gate) == looked_up  # neither asked the throttled upstream
    assert [line["cache"] for line in decisions(gate.logs)][-2:] == ["hit", "stale"]
    assert len(sandbox.calls("POST", "/orders")) == 4
    text = await gate.metrics()
    assert metric(text, "gate_acceptance_stale_total") == 1
    assert metric(text, "gate_acceptance_throttled_total") == 1


async def test_throttled_lookups_fail_open_as_would_block(start_gate: StartGate) -> None:
    """§2 + §3 on_lookup_error = "allow": while throttled, gated calls go through as would-block."""
    gate = await start_gate(acceptance={"on_lookup_error": "allow"})
    gate.upstream.sandbox.knobs.throttled_partners = frozenset({PARTNER_A})
    gate.upstream.sandbox.knobs.agreements_retry_after = "60"
    responses = [await _order(gate, customer) for customer in CUSTOMERS[:4]]
    assert [(r.status, r.headers["X-Gate-Decision"]) for r in responses] == [
        (201, "would-block")
    ] * 4
    assert _lookups(gate) == 1
    assert len(gate.upstream.sandbox.calls("POST", "/orders")) == 4
    assert {line["reason"] for line in decisions(gate.logs)} == {"lookup_error"}


async def test_lookups_queued_behind_a_429_are_not_sent(start_gate: StartGate) -> None:
    """§2: lookups waiting for a slot when the 429 arrives are answered without asking."""
    gate = await start_gate(acceptance={"max_concurrent_lookups": 1, "lookup_timeout_s": 5})
    sandbox = gate.upstream.sandbox
    sandbox.knobs.throttled_partners = frozenset({PARTNER_A})
    sandbox.knobs.agreements_retry_after = "60"
    sandbox.knobs.agreements_delay_s = 0.3  # the first holds the only slot; the rest queue
    responses = await asyncio.gather(*(_order(gate, c) for c in CUSTOMERS[:6]))
    assert [await _unavailable(r) for r in responses] == [60] * 6
    assert _lookups(gate) == 1
