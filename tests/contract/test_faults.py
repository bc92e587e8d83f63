"""DESIGN §2 errors under upstream faults: a clear 502/503/504 or a cut, never a hang or a guess.

The upstream is ``tests.contract.faults.FaultUpstream`` (raw sockets, every
byte chosen) or the sandbox with its 5xx knob. The gate's clocks are small
(read 0.5 s, connect 0.5 s, lookup 1 s) and every wait here is bounded, so a
hang fails the test instead of stalling it; nothing measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from multidict import CIMultiDict

from tests.conftest import Gate, StartGate
from tests.contract.faults import Fault, FaultUpstream
from tests.support import CUSTOMER, PARTNER_A, auth, decisions, metric, order, orders_path

_BOUND_S = 10.0
_CLOCKS = {"read_timeout_s": 0.5, "connect_timeout_s": 0.5}
_ORDER = json.dumps(order()).encode()
_TOKEN = auth()["Authorization"]
CUT = "cut"  # the connection ended inside an answer


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
async def faulty() -> AsyncIterator[FaultUpstream]:
    upstream = FaultUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


async def _gate(start_gate: StartGate, faulty: FaultUpstream, **acceptance: Any) -> Gate:
    return await start_gate(
        upstream={"url": faulty.url, **_CLOCKS},
        acceptance={"lookup_timeout_s": 1, **acceptance},
    )


async def _call(gate: Gate, request: bytes) -> Reply | str:
    """One request on a new raw connection: the whole answer, or CUT (bounded: never a hang)."""
    port = gate.client.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(_BOUND_S):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return CUT
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers: CIMultiDict[str] = CIMultiDict()
            for line in filter(None, lines):
                name, _, value = line.partition(":")
                headers.add(name.strip(), value.strip())
            try:
                body = await reader.readexactly(int(headers["Content-Length"]))
            except (asyncio.IncompleteReadError, ConnectionError):
                return CUT  # a short body is never taken for a whole one
        return Reply(int(status_line.split(" ")[1]), headers, body)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _order_request(correlation: str, customer: str = CUSTOMER) -> bytes:
    return (
        f"POST {orders_path(customer)} HTTP/1.1\r\nHost: gate\r\nAuthorization: {_TOKEN}\r\n"
        f"Content-Type: application/json\r\nMS-CorrelationId: {correlation}\r\n"
        f"Content-Length: {len(_ORDER)}\r\n\r\n"
    ).encode() + _ORDER


def _get_request(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: gate\r\n\r\n".encode()


def _orders_with(faulty: FaultUpstream, correlation: str) -> int:
    return sum(s.headers.get("ms-correlationid") == correlation for s in faulty.calls("orders"))


def _assert_error(reply: Reply | str, status: int, name: str) -> Reply:
    assert isinstance(reply, Reply), reply
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert (reply.json()["errorName"], reply.json()["source"]) == (name, "gate")
    return reply


async def _fail(faulty: FaultUpstream, kind: str, fault: Fault | None) -> None:
    """Turn a fault on; None: refuse connections (nobody listens on the port)."""
    if fault is None:
        await faulty.stop()
    else:
        faulty.faults[kind] = fault


async def _heal(faulty: FaultUpstream) -> None:
    faulty.faults = dict.fromkeys(faulty.faults, Fault.OK)
    if faulty._server is None:
        await faulty.start()


_REFUSED = pytest.param(None, id="refused")


# -- the agreements endpoint fails: gated calls are refused, never forwarded ----------------


@pytest.mark.parametrize(
    "fault",
    [
        _REFUSED,
        *(
            pytest.param(f, id=f.value)
            for f in (Fault.HANG, Fault.GARBAGE, Fault.RESET, Fault.DROP, Fault.STALL, Fault.STORM)
        ),
    ],
)
async def test_failing_lookup_is_503_and_the_order_is_never_sent(
    start_gate: StartGate, faulty: FaultUpstream, fault: Fault | None
) -> None:
    """§2 + §1.1: a lookup that fails in any way is a prompt 503 with Retry-After; no order goes."""
    gate = await _gate(start_gate, faulty)
    faulty.accepted.add(CUSTOMER)
    await _fail(faulty, "agreements", fault)
    reply = _assert_error(
        await _call(gate, _order_request("during")), 503, "AcceptanceStatusUnavailable"
    )
    assert reply.headers["X-Gate-Decision"] == "blocked"
    assert int(reply.headers["Retry-After"]) >= 1
    assert faulty.calls("orders") == []  # never forwarded without a decision
    [line] = decisions(gate.logs)
    assert (line["decision"], line["reason"], line["cache"]) == ("blocked", "lookup_error", "error")

    await _heal(faulty)  # the upstream comes back: the gate recovers by itself
    healed = await _call(gate, _order_request("after"))
    assert isinstance(healed, Reply) and healed.status == 201
    assert healed.headers["X-Gate-Decision"] == "allowed"
    assert _orders_with(faulty, "after") == 1


# -- the order itself meets the fault: a 502/504 or a cut, and it reached the upstream once --

ORDER_FAULTS = [
    pytest.param(None, 502, "UpstreamUnavailable", 0, id="refused"),
    pytest.param(Fault.HANG, 504, "UpstreamTimeout", 1, id="hang"),
    pytest.param(Fault.GARBAGE, 502, "UpstreamUnavailable", 1, id="garbage"),
    pytest.param(Fault.RESET, 502, "UpstreamUnavailable", 1, id="reset-mid-answer"),
    pytest.param(Fault.DROP, 502, "UpstreamUnavailable", 1, id="read-then-dropped"),
    pytest.param(Fault.STALL, 504, "UpstreamTimeout", 1, id="stall-mid-answer"),
    pytest.param(Fault.SLOW, 201, None, 1, id="slow-answer"),
]


@pytest.mark.parametrize(("fault", "status", "error", "reached"), ORDER_FAULTS)
async def test_order_meeting_a_fault_reaches_the_upstream_at_most_once(
    start_gate: StartGate,
    faulty: FaultUpstream,
    fault: Fault | None,
    status: int,
    error: str | None,
    reached: int,
) -> None:
    """§2: a non-idempotent call is never re-sent; its caller gets a 502/504, a cut, the answer."""
    gate = await _gate(start_gate, faulty)
    faulty.accepted.add(CUSTOMER)
    primed = await _call(gate, _order_request("primed"))  # cached, and a pooled connection
    assert isinstance(primed, Reply) and primed.status == 201
    await _fail(faulty, "orders", fault)
    reply = await _call(gate, _order_request("faulted"))
    if reply == CUT:
        assert fault in (Fault.RESET, Fault.STALL)  # only once the answer had begun
    elif error is None:
        assert isinstance(reply, Reply) and reply.status == status
        assert reply.json()["size"] == len(_ORDER)  # the slow answer arrived whole
    else:
        _assert_error(reply, status, error)
    if isinstance(reply, Reply):
        assert reply.headers["X-Gate-Decision"] == "allowed"  # decided, then the upstream failed
    assert _orders_with(faulty, "faulted") == reached
    statuses = [line["status"] for line in decisions(gate.logs)]
    assert statuses[0] == 201 and len(statuses) == 2  # one decision line per order

    await _heal(faulty)
    healed = await _call(gate, _order_request("after"))
    assert isinstance(healed, Reply) and healed.status == 201
    assert _orders_with(faulty, "after") == 1


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param(None, 502, id="refused"),
        pytest.param(Fault.HANG, 504, id="hang"),
        pytest.param(Fault.GARBAGE, 502, id="garbage"),
        pytest.param(Fault.SLOW, 200, id="slow-answer"),
    ],
)
async def test_pass_through_read_meeting_a_fault_is_answered(
    start_gate: StartGate, faulty: FaultUpstream, fault: Fault | None, status: int
) -> None:
    """§2 errors: a read is a prompt 502/504 (or, slow but steady, its whole answer); then heals."""
    gate = await _gate(start_gate, faulty)
    await _fail(faulty, "other", fault)
    reply = await _call(gate, _get_request("/v1/customers?faulted"))
    assert isinstance(reply, Reply), reply
    assert reply.status == status
    if status == 200:
        assert reply.json()["target"] == "/v1/customers?faulted"
    else:
        assert reply.json()["source"] == "gate"
        assert "X-Gate-Decision" not in reply.headers  # not gated
    await _heal(faulty)
    healed = await _call(gate, _get_request("/v1/customers?after"))
    assert isinstance(healed, Reply) and healed.status == 200


# -- an outage of the agreements endpoint: confirmed pairs stay confirmed ---------------------

_CONFIRMED = [f"c0ffee00-0000-4000-8000-{n:012d}" for n in range(5)]
_UNCONFIRMED = [f"c0ffee00-0000-4000-9000-{n:012d}" for n in range(5)]


async def _orders(gate: Gate, customers: list[str]) -> list[tuple[int, str]]:
    replies = await asyncio.gather(
        *(gate.client.post(orders_path(c), json=order(), headers=auth()) for c in customers)
    )
    return [(r.status, r.headers["X-Gate-Decision"]) for r in replies]


async def test_agreements_outage_keeps_confirmed_pairs_for_stale_if_error_s(
    start_gate: StartGate,
) -> None:
    """§3 stale_if_error_s: in a 5xx storm confirmed pairs stay allowed (stale), never withdrawn."""
    gate = await start_gate(
        acceptance={"positive_ttl_s": 0.3, "negative_ttl_s": 0.3, "stale_if_error_s": 1.5}
    )
    sandbox = gate.upstream.sandbox
    for customer in _CONFIRMED:
        sandbox.accept(PARTNER_A, customer)
    assert await _orders(gate, _CONFIRMED) == [(201, "allowed")] * 5
    await asyncio.sleep(0.4)  # past positive_ttl_s: every gated call now asks again
    sandbox.knobs.agreements_status = 503
    rounds = 3
    for _ in range(rounds):
        assert await _orders(gate, _CONFIRMED) == [(201, "allowed")] * 5
        assert await _orders(gate, _UNCONFIRMED) == [(503, "blocked")] * 5
    text = await gate.metrics()
    assert metric(text, "gate_acceptance_stale_total") == rounds * 5
    stale = [line for line in decisions(gate.logs) if line["cache"] == "stale"]
    assert len(stale) == rounds * 5
    assert {(line["decision"], line["acceptance"]) for line in stale} == {("allowed", "accepted")}

    await asyncio.sleep(1.5)  # stale_if_error_s is over: still unknown (503), never 'not accepted'
    assert await _orders(gate, _CONFIRMED) == [(503, "blocked")] * 5

    sandbox.knobs.agreements_status = None  # the storm ends: fresh answers, no restart
    assert await _orders(gate, _CONFIRMED) == [(201, "allowed")] * 5
    assert await _orders(gate, _UNCONFIRMED) == [(403, "blocked")] * 5
    placed = len(sandbox.calls("POST", "/orders"))
    assert placed == 5 + rounds * 5 + 5  # no unconfirmed order, no refused one, ever
