"""DESIGN §1.1 lookup outcomes, §3 [acceptance] and §6: the acceptance cache and its lookups."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from gate.app import create_app
from tests.conftest import Gate, MakeSettings, ServeApp, StartGate, Upstream
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    decisions,
    metric,
    order,
    orders_path,
)

OTHER_CUSTOMERS = (
    "c0ffee00-0000-4000-8000-000000000001",
    "c0ffee00-0000-4000-8000-000000000002",
)


def _lookups(gate: Gate, customer: str = CUSTOMER) -> int:
    return len(gate.upstream.sandbox.calls("GET", agreements_path(customer)))


async def _order(gate: Gate, customer: str = CUSTOMER) -> Any:
    return await gate.client.post(orders_path(customer), json=order(), headers=auth())


# -- single flight and caching ------------------------------------------------------


async def test_concurrent_orders_for_one_pair_share_one_lookup(gate: Gate) -> None:
    """§6: twenty concurrent orders for one unconfirmed pair make exactly one lookup upstream."""
    gate.upstream.sandbox.knobs.agreements_delay_s = 0.2
    responses = await asyncio.gather(*(_order(gate) for _ in range(20)))
    assert [r.status for r in responses] == [403] * 20
    assert _lookups(gate) == 1
    assert gate.upstream.sandbox.calls("POST", "/orders") == []


async def test_confirmed_pair_is_served_from_cache(gate: Gate) -> None:
    """§1.1: a confirmed pair is cached for positive_ttl_s, so a second order makes no lookup."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    first, second = await _order(gate), await _order(gate)
    assert (first.status, second.status) == (201, 201)
    assert _lookups(gate) == 1
    text = await gate.metrics()
    assert metric(text, "gate_acceptance_lookups_total", result="miss") == 1
    assert metric(text, "gate_acceptance_lookups_total", result="hit") == 1
    assert [line["cache"] for line in decisions(gate.logs)] == ["miss", "hit"]


async def test_not_confirmed_is_trusted_only_for_negative_ttl(start_gate: StartGate) -> None:
    """§6: a confirmation made elsewhere is seen once negative_ttl_s has run out, not before."""
    gate = await start_gate(acceptance={"negative_ttl_s": 0.3})
    assert (await _order(gate)).status == 403
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)  # in the portal, not through this gate
    assert (await _order(gate)).status == 403  # still within the TTL: the cached answer
    assert _lookups(gate) == 1
    await asyncio.sleep(0.4)
    allowed = await _order(gate)
    assert allowed.status == 201
    assert allowed.headers["X-Gate-Decision"] == "allowed"
    assert _lookups(gate) == 2


async def test_cache_is_bounded_by_max_entries(start_gate: StartGate) -> None:
    """§3: max_entries bounds the cache; with 2 and three customers it holds at most 2 entries."""
    gate = await start_gate(acceptance={"max_entries": 2})
    for customer in (CUSTOMER, *OTHER_CUSTOMERS):
        assert (await _order(gate, customer)).status == 403
    assert metric(await gate.metrics(), "gate_acceptance_cache_entries") == 2
    assert (await _order(gate, CUSTOMER)).status == 403  # the oldest was evicted: asked again
    assert _lookups(gate, CUSTOMER) == 2


async def test_lookup_uses_the_callers_credentials_and_every_type(gate: Gate) -> None:
    """R4: a lookup carries the caller's Authorization and agreementType=* (both types count)."""
    headers = {**auth(), "MS-CorrelationId": "corr-42"}
    await gate.client.post(orders_path(), json=order(), headers=headers)
    [lookup] = gate.upstream.sandbox.calls("GET", agreements_path())
    assert lookup.path == agreements_path()
    assert lookup.query_string == "agreementType=*"
    assert lookup.headers["Authorization"] == auth()["Authorization"]
    assert lookup.headers["MS-CorrelationId"] == "corr-42"


# -- lookup errors -----------------------------------------------------------------------

# A 429 is a lookup error too, but it also holds the partner's lookups back: test_throttling.py.
LOOKUP_ERRORS = [
    pytest.param({"agreements_status": 500}, {}, id="500"),
    pytest.param({"agreements_status": 502}, {}, id="502"),
    pytest.param({"agreements_body": b"not json"}, {}, id="bad-json"),
    pytest.param({"agreements_body": b'{"items": "none"}'}, {}, id="wrong-shape"),
    pytest.param({"agreements_delay_s": 1.0}, {"lookup_timeout_s": 0.1}, id="timeout"),
]


def _turn(gate: Gate, knobs: dict[str, Any]) -> None:
    for name, value in knobs.items():
        setattr(gate.upstream.sandbox.knobs, name, value)


@pytest.mark.parametrize(("knobs", "acceptance"), LOOKUP_ERRORS)
async def test_lookup_error_fails_closed_and_is_never_cached(
    start_gate: StartGate, knobs: dict[str, Any], acceptance: dict[str, Any]
) -> None:
    """§1.1: a failed lookup answers 503 AcceptanceStatusUnavailable with Retry-After, uncached."""
    gate = await start_gate(acceptance=acceptance)
    _turn(gate, knobs)
    for attempt in (1, 2):
        response = await _order(gate)
        assert response.status == 503
        assert response.headers["X-Gate-Decision"] == "blocked"
        assert int(response.headers["Retry-After"]) > 0
        body = await response.json()
        assert body["errorName"] == "AcceptanceStatusUnavailable"
        assert _lookups(gate) == attempt  # asked again: the failure was not cached
    assert gate.upstream.sandbox.calls("POST", "/orders") == []
    assert metric(await gate.metrics(), "gate_acceptance_lookups_total", result="error") == 2


async def test_lookup_error_then_recovery_sees_the_fresh_answer(gate: Gate) -> None:
    """§1.1: after a failed lookup the next call asks again and gets the upstream's real answer."""
    gate.upstream.sandbox.knobs.agreements_status = 500
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    assert (await _order(gate)).status == 503
    gate.upstream.sandbox.knobs.agreements_status = None
    assert (await _order(gate)).status == 201


@pytest.mark.parametrize(
    ("knobs", "acceptance"),
    [*LOOKUP_ERRORS[:3], pytest.param({"agreements_status": 429}, {}, id="429")],
)
async def test_lookup_error_fails_open_when_configured(
    start_gate: StartGate, knobs: dict[str, Any], acceptance: dict[str, Any]
) -> None:
    """§3: with on_lookup_error = "allow" a failed lookup forwards the call flagged would-block."""
    gate = await start_gate(acceptance={"on_lookup_error": "allow", **acceptance})
    _turn(gate, knobs)
    response = await _order(gate)
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "would-block"
    assert len(gate.upstream.sandbox.calls("POST", "/orders")) == 1
    assert decisions(gate.logs)[-1]["reason"] == "lookup_error"


@pytest.mark.parametrize("status", [401, 403])
async def test_lookup_denial_is_relayed_and_not_cached(gate: Gate, status: int) -> None:
    """§1.1: a 401/403 lookup is returned to the caller as the upstream gave it, and not cached."""
    gate.upstream.sandbox.knobs.agreements_status = status
    for attempt in (1, 2):
        response = await _order(gate)
        assert response.status == status
        assert response.headers["X-Gate-Decision"] == "blocked"
        assert await response.json() == {
            "code": 0,
            "description": "SandboxFailure: forced by a knob",
            "errorName": "SandboxFailure",
        }
        assert _lookups(gate) == attempt
    assert gate.upstream.sandbox.calls("POST", "/orders") == []
    gate.upstream.sandbox.knobs.agreements_status = None
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    assert (await _order(gate)).status == 201  # nothing was remembered from the denial


async def test_confirmed_pair_stays_confirmed_while_lookups_fail(start_gate: StartGate) -> None:
    """§3: past positive_ttl_s a confirmed pair stays allowed while its re-lookup fails."""
    gate = await start_gate(acceptance={"positive_ttl_s": 0.2})
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    assert (await _order(gate)).status == 201
    await asyncio.sleep(0.3)
    gate.upstream.sandbox.knobs.agreements_status = 500
    response = await _order(gate)
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "allowed"
    assert _lookups(gate) == 2  # the entry had expired, so the gate did ask
    assert [line["cache"] for line in decisions(gate.logs)] == ["miss", "stale"]
    text = await gate.metrics()
    assert metric(text, "gate_acceptance_stale_total") == 1
    assert metric(text, "gate_acceptance_lookups_total", result="error") == 1  # it did fail


async def test_stale_confirmation_is_not_kept_without_stale_if_error(
    start_gate: StartGate,
) -> None:
    """§3: with stale_if_error_s = 0 an expired confirmed pair is not trusted when lookups fail."""
    gate = await start_gate(acceptance={"positive_ttl_s": 0.2, "stale_if_error_s": 0})
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    assert (await _order(gate)).status == 201
    await asyncio.sleep(0.3)
    gate.upstream.sandbox.knobs.agreements_status = 500
    assert (await _order(gate)).status == 503


async def test_observe_mode_forwards_even_when_the_lookup_is_denied(start_gate: StartGate) -> None:
    """R7 §1.1: observing never blocks; a 403 lookup flags the call and the upstream decides."""
    gate = await start_gate(policy={"mode": "observe"})
    gate.upstream.sandbox.knobs.agreements_status = 403
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "would-block"
    assert len(gate.upstream.sandbox.calls("POST", "/orders")) == 1


async def test_no_order_is_placed_for_a_caller_who_left_during_the_lookup(
    make_settings: MakeSettings, upstream: Upstream, serve_app: ServeApp
) -> None:
    """Nothing duplicated: a caller gone before the decision may retry, so its order stays put."""
    logs = io.StringIO()
    gate = await serve_app(create_app(make_settings(), log_stream=logs))
    try:
        upstream.sandbox.accept(PARTNER_A, CUSTOMER)
        upstream.sandbox.knobs.agreements_delay_s = 0.5
        body = json.dumps(order()).encode()
        _, writer = await asyncio.open_connection("127.0.0.1", gate.server.port)
        writer.write(
            f"POST {orders_path()} HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\n"
            f"Authorization: {auth()['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body
        )  # fmt: skip
        await writer.drain()
        await asyncio.sleep(0.1)  # the lookup is under way
        writer.close()
        async with asyncio.timeout(5):
            while not decisions(logs):  # noqa: ASYNC110 - a log stream has no event
                await asyncio.sleep(0.02)
    finally:
        await gate.close()
    assert upstream.sandbox.calls("POST", "/orders") == []
    assert decisions(logs)[-1]["reason"] == "client_gone"
