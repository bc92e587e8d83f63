"""DESIGN §2 "Classification cannot be bypassed", at the HTTP/1.1 framing level.

Raw bytes go to the gate's port, so the client library cannot tidy them up.
A framing the gate could read one way and a later hop another way must be
answered 4xx (or the connection closed), and no order the gate did not see
and block may reach the upstream.
"""

from __future__ import annotations

import json

import pytest

from gate.sandbox import make_token
from tests.conftest import Gate
from tests.contract.conftest import exchange
from tests.support import PARTNER_A, order, orders_path

_TOKEN = make_token(PARTNER_A)
_ORDER = json.dumps(order()).encode()


def _hidden_order() -> bytes:
    """A complete gated request, to be smuggled after or inside another one."""
    return (
        f"POST {orders_path()} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(_ORDER)}\r\n\r\n"
    ).encode() + _ORDER


def _orders_at_sandbox(gate: Gate) -> list[str]:
    return [r.path for r in gate.upstream.sandbox.calls("POST", "/orders")]


async def _send(gate: Gate, data: bytes, count: int = 2) -> list[int]:
    port = gate.client.server.port
    assert port is not None
    return [response.status for response in await exchange(port, data, count)]


_HIDDEN = _hidden_order()
_CHUNKED_HIDDEN = b"0\r\n\r\n" + _HIDDEN

MALFORMED = [
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
        % len(_CHUNKED_HIDDEN)
        + _CHUNKED_HIDDEN,
        id="content-length-and-transfer-encoding",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n"
        % len(_CHUNKED_HIDDEN)
        + _CHUNKED_HIDDEN,
        id="transfer-encoding-then-content-length",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(_HIDDEN) + _HIDDEN,
        id="two-content-lengths",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Content-Length: 0, %d\r\n\r\n" % len(_HIDDEN) + _HIDDEN,
        id="content-length-list",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Content-Length: +%d\r\n\r\n" % len(_HIDDEN) + _HIDDEN,
        id="content-length-signed",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Transfer-Encoding: chunked, identity\r\n\r\n" + _CHUNKED_HIDDEN,
        id="chunked-not-last",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + _CHUNKED_HIDDEN,
        id="two-transfer-encodings",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\n" + _CHUNKED_HIDDEN,
        id="unknown-transfer-coding",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Transfer-Encoding : chunked\r\n\r\n" + _CHUNKED_HIDDEN,
        id="space-before-colon",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"X-Note: a\r\n Transfer-Encoding: chunked\r\n\r\n" + _CHUNKED_HIDDEN,
        id="obs-fold",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"Transfer-Encoding:\r\n chunked\r\n\r\n" + _CHUNKED_HIDDEN,
        id="obs-fold-transfer-encoding",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"X-Note: a\nTransfer-Encoding: chunked\r\n\r\n" + _CHUNKED_HIDDEN,
        id="bare-lf-in-headers",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\nHost: gate\nTransfer-Encoding: chunked\n\n"
        + _CHUNKED_HIDDEN,
        id="bare-lf-everywhere",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\n"
        b"X-Note: a\rTransfer-Encoding: chunked\r\n\r\n" + _CHUNKED_HIDDEN,
        id="bare-cr-in-headers",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n" + _HIDDEN,
        id="chunk-size-not-hex",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"-1\r\n" + _HIDDEN,
        id="chunk-size-negative",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0x5\r\nhello\r\n" + _CHUNKED_HIDDEN,
        id="chunk-size-0x-prefix",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10000000000000000\r\n" + _HIDDEN,
        id="chunk-size-overflow",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhelloXX\r\n" + _CHUNKED_HIDDEN,
        id="chunk-longer-than-its-size",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\nhello\n0\n\n" + _HIDDEN,
        id="chunk-bare-lf",
    ),
    pytest.param(
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nX-Note: a\x00b\r\n"
        b"Content-Length: %d\r\n\r\n" % len(_HIDDEN) + _HIDDEN,
        id="nul-in-header",
    ),
]


@pytest.mark.parametrize("data", MALFORMED)
async def test_malformed_framing_is_refused_and_smuggles_nothing(gate: Gate, data: bytes) -> None:
    """§2 no bypass: a framing with two readings is answered 4xx (or cut), never relayed.

    One request gets at most one answer: the connection is read until it closes.
    """
    statuses = await _send(gate, data, count=5)
    assert statuses == [] or (len(statuses) == 1 and 400 <= statuses[0] < 500), statuses
    assert _orders_at_sandbox(gate) == []


async def test_order_hidden_in_a_harmless_body_stays_a_body(gate: Gate) -> None:
    """§2 no bypass: an order smuggled in a read's body reaches the upstream only as bytes."""
    data = (
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % len(_HIDDEN) + _HIDDEN
    )
    statuses = await _send(gate, data, count=1)
    assert statuses == [200]
    assert _orders_at_sandbox(gate) == []
    (harmless,) = gate.upstream.sandbox.received
    assert harmless.path == "/v1/customers"
    assert harmless.body == _HIDDEN


async def test_order_after_a_chunked_body_is_a_request_the_gate_classifies(gate: Gate) -> None:
    """§2 no bypass: bytes after a chunked body's end are the next request, and are gated."""
    data = (
        b"POST /v1/customers HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n" + _CHUNKED_HIDDEN
    )
    statuses = await _send(gate, data)
    assert statuses == [200, 403]
    assert _orders_at_sandbox(gate) == []


async def test_pipelined_requests_each_get_their_own_answer(gate: Gate) -> None:
    """§2 pass-through: pipelined keep-alive requests are answered in order, one each."""
    port = gate.client.server.port
    assert port is not None
    data = (
        b"GET /v1/customers?first HTTP/1.1\r\nHost: gate\r\n\r\n"
        + _HIDDEN
        + b"GET /sandbox/status/404 HTTP/1.1\r\nHost: gate\r\n\r\n"
        b"GET /v1/customers?last HTTP/1.1\r\nHost: gate\r\n\r\n"
    )
    first, blocked, missing, last = await exchange(port, data, count=4)
    assert (first.status, blocked.status, missing.status, last.status) == (200, 403, 404, 200)
    assert json.loads(first.body)["query_string"] == "first"
    assert json.loads(blocked.body)["errorName"] == "CustomerAcceptanceRequired"
    assert blocked.headers["X-Gate-Decision"] == "blocked"
    assert json.loads(missing.body) == {"status": 404}
    assert json.loads(last.body)["query_string"] == "last"
    assert [r.query_string for r in gate.upstream.sandbox.calls("GET", "/v1/customers")] == [
        "first",
        "last",
    ]
    assert _orders_at_sandbox(gate) == []


@pytest.mark.parametrize(
    "coding",
    [
        pytest.param("gzip, chunked", id="gzip-then-chunked"),
        pytest.param("deflate,chunked", id="deflate-then-chunked"),
    ],
)
async def test_transfer_codings_other_than_chunked_are_refused(gate: Gate, coding: str) -> None:
    """§2 framing: a transfer coding the gate would silently drop is refused, never forwarded."""
    head = (
        f"POST /v1/customers/c/things HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n"
        "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    port = gate.client.server.port
    assert port is not None
    [response] = await exchange(port, head.encode())
    assert response.status == 400
    assert json.loads(response.body)["errorName"] == "AmbiguousBody"
    assert gate.upstream.sandbox.received == []
