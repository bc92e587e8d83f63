"""DESIGN §2: partner identity, and the gate's own error answers for gated calls."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import Gate, StartGate
from tests.contract.conftest import exchange, free_port
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    PARTNER_B,
    agreements_path,
    auth,
    confirmation,
    decisions,
    order,
    orders_path,
    subscription_path,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_HEADER = _b64(b'{"alg": "none", "typ": "JWT"}')


def _raw_token(claims: bytes) -> str:
    """A bearer token whose claims are these exact bytes (make_token cannot repeat a key)."""
    return f"Bearer {_HEADER}.{_b64(claims)}.sig"


_TID = PARTNER_A.encode()

UNIDENTIFIED = [
    pytest.param({}, id="no-token"),
    pytest.param({"Authorization": _raw_token(b'{"oid": "x"}')}, id="no-tid"),
    pytest.param(
        {"Authorization": _raw_token(b'{"tid": "%s", "tid": "%s"}' % (_TID, PARTNER_B.encode()))},
        id="two-tid-claims",
    ),
    pytest.param(
        {"Authorization": _raw_token(b'{"tid": "%s", "tid": "%s"}' % (_TID, _TID))},
        id="tid-repeated-same-value",
    ),
    pytest.param({"Authorization": _raw_token(b'{"tid": 42}')}, id="tid-not-a-string"),
    pytest.param({"Authorization": _raw_token(b'{"TID": "%s"}' % _TID)}, id="tid-wrong-case"),
    pytest.param({"Authorization": _raw_token(b'["%s"]' % _TID)}, id="claims-not-object"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-auth"),
    pytest.param(
        {"Authorization": auth()["Authorization"].replace("Bearer", "Token")}, id="non-bearer"
    ),
    pytest.param({"Authorization": "Bearer not-a-jwt"}, id="not-a-jwt"),
    pytest.param({"Authorization": "Bearer a.!!!.c"}, id="bad-base64"),
]


async def _assert_partner_unknown(gate: Gate, response: Any) -> None:
    assert response.status == 401
    assert response.headers["X-Gate-Decision"] == "blocked"
    body = await response.json()
    assert body["errorName"] == "PartnerUnknown"
    assert body["source"] == "gate"
    assert gate.upstream.sandbox.received == []  # neither forwarded nor looked up


@pytest.mark.parametrize("headers", UNIDENTIFIED)
async def test_gated_call_without_one_tid_is_partner_unknown(
    gate: Gate, headers: dict[str, str]
) -> None:
    """§2: a gated call whose token lacks exactly one string tid claim is 401 PartnerUnknown."""
    response = await gate.client.post(orders_path(), json=order(), headers=headers)
    await _assert_partner_unknown(gate, response)
    assert decisions(gate.logs)[-1]["error"] == "PartnerUnknown"


async def test_two_authorization_headers_are_partner_unknown(gate: Gate) -> None:
    """§2: two Authorization headers do not name one partner, so the gated call is 401."""
    headers = [("Authorization", auth(PARTNER_A)["Authorization"])] * 2
    response = await gate.client.post(orders_path(), json=order(), headers=headers)
    await _assert_partner_unknown(gate, response)


@pytest.mark.parametrize(
    ("method", "path", "doc"),
    [
        pytest.param("POST", agreements_path(), confirmation(), id="confirmation"),
        pytest.param("PATCH", subscription_path(), {"quantity": 12}, id="seat-change"),
    ],
)
async def test_other_gated_calls_need_a_partner_too(
    gate: Gate, method: str, path: str, doc: dict[str, Any]
) -> None:
    """§2: a confirmation or seat change without partner identity is also 401 PartnerUnknown."""
    response = await gate.client.request(method, path, json=doc)
    await _assert_partner_unknown(gate, response)


@pytest.mark.parametrize(
    ("method", "path", "doc"),
    [
        pytest.param("GET", orders_path(), None, id="read"),
        pytest.param("POST", "/v1/customers", {"companyProfile": {}}, id="create-customer"),
        pytest.param("PATCH", subscription_path(), {"friendlyName": "x"}, id="nickname"),
        pytest.param("PATCH", f"{orders_path()}/o-1", {"status": "cancelled"}, id="cancel"),
    ],
)
async def test_ungated_calls_pass_without_a_token(
    gate: Gate, method: str, path: str, doc: dict[str, Any] | None
) -> None:
    """R2: calls that are not gated need no partner identity and are forwarded unflagged."""
    response = await gate.client.request(method, path, json=doc)
    assert "X-Gate-Decision" not in response.headers
    assert (await response.json()).get("source") != "gate"  # the upstream's answer, whatever it is
    assert [(r.method, r.path) for r in gate.upstream.sandbox.received] == [(method, path)]


async def test_partner_header_names_the_partner(start_gate: StartGate) -> None:
    """§2: with identity.partner_header set, that header (not the token's tid) names the partner."""
    gate = await start_gate(
        identity={"partner_header": "X-Partner-Id"},
        policy={"partners": {PARTNER_A: {"mode": "off"}}},
    )
    headers = {**auth(PARTNER_B), "X-Partner-Id": PARTNER_A.upper()}
    response = await gate.client.post(orders_path(), json=order(), headers=headers)
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "exempt"  # A's override, not B's policy
    line = decisions(gate.logs)[-1]
    assert (line["partner"], line["customer"]) == (PARTNER_A, CUSTOMER)


async def test_partner_header_decides_the_cache_key(start_gate: StartGate) -> None:
    """§2/R3: with partner_header set, acceptance is keyed by the header's partner, not the tid."""
    gate = await start_gate(identity={"partner_header": "X-Partner-Id"})
    as_a = {**auth(PARTNER_B), "X-Partner-Id": PARTNER_A}
    confirmed = await gate.client.post(agreements_path(), json=confirmation(), headers=as_a)
    assert confirmed.status == 201
    gate.upstream.sandbox.knobs.agreements_status = 500  # only the cache can answer now
    allowed = await gate.client.post(orders_path(), json=order(), headers=as_a)
    assert allowed.status == 201  # (A, customer) was recorded, whatever the token's tid
    as_b = {**auth(PARTNER_A), "X-Partner-Id": PARTNER_B}
    unknown = await gate.client.post(orders_path(), json=order(), headers=as_b)
    assert unknown.status == 503  # (B, customer) was never recorded: the gate had to ask


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(auth(), id="token-but-no-header"),
        pytest.param([("X-Partner-Id", PARTNER_A), ("X-Partner-Id", PARTNER_B)], id="repeated"),
        pytest.param({"X-Partner-Id": ""}, id="empty"),
        pytest.param({"X-Partner-Id": "a b"}, id="not-a-tenant-id"),
    ],
)
async def test_missing_partner_header_is_partner_unknown(
    start_gate: StartGate, headers: Any
) -> None:
    """§2: with identity.partner_header set, a gated call without exactly one such header is 401."""
    gate = await start_gate(identity={"partner_header": "X-Partner-Id"})
    response = await gate.client.post(orders_path(), json=order(), headers=headers)
    await _assert_partner_unknown(gate, response)


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        pytest.param("POST", orders_path(), b'{"lineItems": [], "LineItems": []}', id="order"),
        pytest.param(
            "PATCH", subscription_path(), b'{"quantity": 10, "Quantity": 500}', id="seat-change"
        ),
        pytest.param(
            "POST",
            orders_path(),
            b'{"lineItems": [{"quantity": 1, "QUANTITY": 9}]}',
            id="nested",
        ),
    ],
)
async def test_gated_body_with_repeated_key_is_ambiguous(
    gate: Gate, method: str, path: str, raw: bytes
) -> None:
    """§1.1: a gated call's JSON body repeating a key case-insensitively is 400 AmbiguousBody."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)  # refused even for a confirmed pair
    response = await gate.client.request(
        method, path, data=raw, headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert (await response.json())["errorName"] == "AmbiguousBody"
    assert gate.upstream.sandbox.calls(method, path) == []


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        pytest.param(subscription_path(), {"nickname": "HQ"}, id="edit-without-quantity"),
        pytest.param(f"{orders_path()}/order-1", {"status": "cancelled"}, id="cancel-only"),
    ],
)
async def test_failure_of_a_call_that_turned_out_ungated_carries_no_decision(
    start_gate: StartGate, path: str, doc: dict[str, Any]
) -> None:
    """§2: a call the body shows is not gated fails like any pass-through: no header, no log."""
    gate = await start_gate(upstream={"url": f"http://127.0.0.1:{free_port()}"})
    response = await gate.client.patch(path, json=doc, headers=auth())
    assert response.status == 502
    assert (await response.json())["errorName"] == "UpstreamUnavailable"
    assert "X-Gate-Decision" not in response.headers
    assert decisions(gate.logs) == []


async def test_an_undecodable_authorization_byte_is_no_crash(gate: Gate) -> None:
    """§2: a token with a non-UTF-8 byte is relayed on lookups as sent, not a bare 500."""
    token = auth()["Authorization"].encode() + b"\xff"
    head = (
        f"POST {orders_path()} HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\n"
        f"Content-Length: 2\r\nConnection: close\r\n"
    ).encode()
    port = gate.client.server.port
    assert port is not None
    [response] = await exchange(port, head + b"Authorization: " + token + b"\r\n\r\n{}")
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"
