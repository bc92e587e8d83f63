"""DESIGN §2 "Classification cannot be bypassed": every spelling of a gated call is gated.

Targets are sent exactly as written (``URL(..., encoded=True)`` or a raw
socket), so neither the client library nor yarl normalises them first. The
partner has not confirmed acceptance, so any order the sandbox receives got
past the gate.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from yarl import URL

from gate.sandbox import make_token
from tests.conftest import Gate
from tests.contract.conftest import exchange
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    order,
    orders_path,
)

_C = CUSTOMER


def _url(gate: Gate, target: str) -> URL:
    return URL(str(gate.client.make_url("/")).rstrip("/") + target, encoded=True)


def _port(gate: Gate) -> int:
    port = gate.client.server.port
    assert port is not None
    return port


def _forwarded(gate: Gate) -> list[tuple[str, str]]:
    """Every call the sandbox received except the gate's own acceptance lookups."""
    return [
        (r.method, r.path)
        for r in gate.upstream.sandbox.received
        if not (
            r.method == "GET"
            and r.path.lower().endswith(
                ("/agreements", "/directsignedmicrosoftcustomeragreementstatus")
            )
        )
    ]


async def _post(gate: Gate, target: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    headers = {**auth(), **kwargs.pop("headers", {})}
    kwargs.setdefault("json", order())
    response = await gate.client.session.post(_url(gate, target), headers=headers, **kwargs)
    return response.status, await response.json()


BLOCKED_SPELLINGS = [
    pytest.param(f"/V1/CUSTOMERS/{_C}/ORDERS", id="upper-case"),
    pytest.param(f"/v1/Customers/{_C.upper()}/Orders", id="mixed-case"),
    pytest.param(f"/v1/customers/{_C}/orders/", id="trailing-slash"),
    pytest.param(f"//v1//customers//{_C}//orders", id="double-slashes"),
    pytest.param(f"/v1/customers/{_C}/./orders", id="dot-segment"),
    pytest.param(f"/v1/customers/{_C}/orders/.", id="trailing-dot"),
    pytest.param(f"/v1/customers/{_C}/x/../orders", id="dot-dot"),
    pytest.param(f"/v1/customers/{_C}/orders/x/..", id="trailing-dot-dot"),
    pytest.param(f"/v1/x/y/../../customers/{_C}/orders", id="dot-dot-twice"),
    pytest.param(f"/../v1/customers/{_C}/orders", id="dot-dot-above-root"),
    pytest.param(f"/v1/customers/{_C}/%6Frders", id="encoded-o-lower"),
    pytest.param(f"/v1/customers/{_C}/%6frders", id="encoded-o-lower-hex"),
    pytest.param(f"/v1/%63%75stomers/{_C}/%4F%52DERS", id="encoded-letters-upper"),
    pytest.param(f"/%76%31/customers/{_C}/orders", id="encoded-v1"),
    pytest.param(f"/v1/customers/{_C}/%2E/orders", id="encoded-dot-segment"),
    pytest.param(f"/v1/customers/{_C}/x/%2E%2E/orders", id="encoded-dot-dot"),
    pytest.param(f"/v1/customers/{_C}/.%2e/{_C}/orders", id="half-encoded-dot-dot"),
]


@pytest.mark.parametrize("target", BLOCKED_SPELLINGS)
async def test_spelling_of_an_order_path_is_still_gated(gate: Gate, target: str) -> None:
    """§2 no bypass: case, slashes, dot segments and encoded letters do not hide an order."""
    status, body = await _post(gate, target)
    assert (status, body.get("errorName")) == (403, "CustomerAcceptanceRequired")
    assert _forwarded(gate) == []


REFUSED_SPELLINGS = [
    pytest.param(f"/v1/customers/{_C}/orders;x=1", id="param-on-last-segment"),
    pytest.param(f"/v1/customers/{_C};x=1/orders", id="param-on-customer"),
    pytest.param(f"/v1;x/customers/{_C}/orders", id="param-on-first-segment"),
    pytest.param(f"/v1/customers/{_C}/orders;", id="empty-param"),
    pytest.param(f"/v1/customers/{_C}/orders.", id="trailing-dot-iis-trims"),
    pytest.param(f"/v1/customers/{_C}/orders%20", id="trailing-blank-iis-trims"),
    pytest.param(f"/v1/customers/{_C}%2Forders", id="encoded-slash-upper"),
    pytest.param(f"/v1/customers/{_C}%2forders", id="encoded-slash-lower"),
    pytest.param(f"/v1/customers/{_C}/x%2F..%2Forders", id="encoded-slash-dot-dot"),
    pytest.param(f"/v1/customers/{_C}%5Corders", id="encoded-backslash"),
    pytest.param(f"/v1/customers/{_C}%5corders", id="encoded-backslash-lower"),
    pytest.param(f"/v1/customers/{_C}%252Forders", id="double-encoded-slash"),
    pytest.param(f"/v1/customers/{_C}/%256Frders", id="double-encoded-letter"),
    pytest.param(f"/v1/customers/{_C}/orders%00", id="encoded-nul"),
    pytest.param(f"/v1/customers/{_C}/%zzorders", id="malformed-escape"),
    pytest.param(f"/v1/customers/{_C}/orders%", id="truncated-escape"),
]


@pytest.mark.parametrize("target", REFUSED_SPELLINGS)
async def test_unreadable_order_path_is_refused(gate: Gate, target: str) -> None:
    """§2 no bypass: encoded slashes, backslashes, double encodings and ;params are refused."""
    status, body = await _post(gate, target)
    assert (status, body.get("errorName")) == (400, "AmbiguousPath")
    assert _forwarded(gate) == []


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(f"/v1/customers/{_C}\\orders", id="backslash"),
        pytest.param(f"/v1/customers/{_C}/x\\..\\orders", id="backslash-dot-dot"),
        pytest.param(f"/v1/customers/{_C}/orders#x", id="fragment"),
        pytest.param(f"/v1/customers/{_C}/orders#/../../x", id="fragment-dot-dot"),
    ],
)
async def test_raw_target_a_hop_could_reread_is_refused(gate: Gate, target: str) -> None:
    """§2 no bypass: a raw backslash or '#' in the path (read as / or cut by others) is refused."""
    body = json.dumps(order()).encode()
    request = (
        f"POST {target} HTTP/1.1\r\nHost: gate\r\nAuthorization: {auth()['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    (response,) = await exchange(_port(gate), request)
    assert response.status == 400
    assert json.loads(response.body)["errorName"] == "AmbiguousPath"
    assert _forwarded(gate) == []


FORWARDED_AS = [
    pytest.param(f"/V1/Customers/{_C}/Orders/", f"/V1/Customers/{_C}/Orders", id="case-kept"),
    pytest.param(f"//v1//customers//{_C}//orders", f"/v1/customers/{_C}/orders", id="slashes"),
    pytest.param(f"/v1/customers/{_C}/x/../orders", f"/v1/customers/{_C}/orders", id="dot-dot"),
    pytest.param(f"/v1/customers/{_C}/./orders/.", f"/v1/customers/{_C}/orders", id="dots"),
    pytest.param(f"/v1/%63ustomers/{_C}/%6Frders", f"/v1/customers/{_C}/orders", id="escapes"),
]


@pytest.mark.parametrize(("target", "forwarded"), FORWARDED_AS)
async def test_allowed_call_forwards_the_path_it_classified(
    gate: Gate, target: str, forwarded: str
) -> None:
    """§2 no bypass: what is forwarded is the normalised path that was classified."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    status, _ = await _post(gate, target)
    assert status == 201
    (placed,) = gate.upstream.sandbox.calls("POST", "/orders")
    assert placed.path == forwarded


async def test_pass_through_path_is_forwarded_normalised(gate: Gate) -> None:
    """§2 no bypass: a call that is not gated is forwarded with the same normalised path."""
    response = await gate.client.session.get(_url(gate, f"/v1//customers/./{_C}/x/../%6Frders/"))
    assert response.status == 200
    (received,) = gate.upstream.sandbox.received
    assert received.path == f"/v1/customers/{_C}/orders"


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
async def test_method_override_to_post_is_refused(gate: Gate, header: str) -> None:
    """§2 no bypass: GET plus a method-override header naming POST is refused, never forwarded."""
    response = await gate.client.get(orders_path(), headers={**auth(), header: "post"})
    assert response.status == 400
    assert (await response.json())["errorName"] == "AmbiguousMethod"
    assert _forwarded(gate) == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
async def test_override_cannot_fake_a_confirmation(gate: Gate, method: str) -> None:
    """R5 no bypass: a read dressed up as POST .../agreements never marks the pair accepted."""
    response = await gate.client.request(
        method,
        agreements_path(),
        json=confirmation(),
        headers={**auth(), "X-HTTP-Method-Override": "POST"},
    )
    assert response.status == 400
    order_response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert order_response.status == 403


async def test_same_method_override_is_harmless(gate: Gate) -> None:
    """§2: an override naming the request's own method classifies as that method."""
    response = await gate.client.post(
        orders_path(), json=order(), headers={**auth(), "X-HTTP-Method-Override": "POST"}
    )
    assert response.status == 403
    assert (await response.json())["errorName"] == "CustomerAcceptanceRequired"


async def test_method_override_to_get_on_an_order_is_not_a_way_out(gate: Gate) -> None:
    """§2 no bypass: POST on an order path with an override naming GET is never forwarded."""
    status, body = await _post(gate, orders_path(), headers={"X-HTTP-Method-Override": "GET"})
    assert (status, body["errorName"]) == (400, "AmbiguousMethod")
    assert _forwarded(gate) == []


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param([("X-HTTP-Method-Override", "POST"), ("X-HTTP-Method", "GET")], id="two"),
        pytest.param([("X-Method-Override", "GET"), ("X-HTTP-Method", "POST")], id="two-other"),
        pytest.param(
            [("X-HTTP-Method-Override", "POST"), ("X-HTTP-Method-Override", "GET")], id="repeated"
        ),
        pytest.param([("X-HTTP-Method-Override", "")], id="empty"),
    ],
)
async def test_conflicting_method_overrides_are_refused(
    gate: Gate, overrides: list[tuple[str, str]]
) -> None:
    """§2 no bypass: method-override headers that disagree are refused with 400 AmbiguousMethod."""
    headers = [*auth().items(), *overrides]
    response = await gate.client.get(orders_path(), headers=headers)
    assert response.status == 400
    assert (await response.json())["errorName"] == "AmbiguousMethod"
    assert _forwarded(gate) == []


@pytest.mark.parametrize("header", ["X-Original-URL", "X-Rewrite-URL"])
async def test_url_override_to_a_gated_path_never_reaches_upstream(gate: Gate, header: str) -> None:
    """§2 no bypass: an X-Original-URL/X-Rewrite-URL naming an order is dropped or refused."""
    response = await gate.client.post(
        "/v1/customers", json={"companyProfile": {}}, headers={**auth(), header: orders_path()}
    )
    assert response.status in (200, 400)
    for received in gate.upstream.sandbox.received:
        assert header not in received.headers
    assert gate.upstream.sandbox.calls("POST", "/orders") == []


def _absolute_form(port: int, path: str, host: str = "") -> bytes:
    body = json.dumps(order()).encode()
    authority = host or f"127.0.0.1:{port}"
    return (
        f"POST http://{authority}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {make_token(PARTNER_A)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize(
    ("path", "host"),
    [
        pytest.param(orders_path(), "", id="origin-host"),
        pytest.param(orders_path(), "other.example", id="other-host"),
        pytest.param(f"/V1/customers/{_C}/./Orders/", "", id="unnormalised"),
    ],
)
async def test_absolute_form_target_is_classified_like_origin_form(
    gate: Gate, path: str, host: str
) -> None:
    """§2 no bypass: `POST http://host/v1/.../orders` is gated like `POST /v1/.../orders`."""
    (response,) = await exchange(_port(gate), _absolute_form(_port(gate), path, host))
    assert response.status == 403
    assert json.loads(response.body)["errorName"] == "CustomerAcceptanceRequired"
    assert _forwarded(gate) == []


async def test_absolute_form_allowed_call_forwards_its_path(gate: Gate) -> None:
    """§2 no bypass: an allowed absolute-form call reaches the upstream with its origin path."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    (response,) = await exchange(_port(gate), _absolute_form(_port(gate), orders_path()))
    assert response.status == 201
    (placed,) = gate.upstream.sandbox.calls("POST", "/orders")
    assert placed.path == orders_path()


@pytest.mark.parametrize("accepted", [False, True], ids=["unconfirmed", "confirmed"])
async def test_duplicate_json_key_on_a_gated_call_is_refused(gate: Gate, accepted: bool) -> None:
    """§1.1: a gated body repeating a key (any case) is refused with 400 AmbiguousBody."""
    if accepted:
        gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    raw = b'{"lineItems": [], "LineItems": [{"offerId": "x", "quantity": 5}]}'
    status, body = await _post(
        gate, orders_path(), data=raw, json=None, headers={"Content-Type": "application/json"}
    )
    assert (status, body["errorName"]) == (400, "AmbiguousBody")
    assert _forwarded(gate) == []


@pytest.mark.parametrize("accepted", [False, True], ids=["unconfirmed", "confirmed"])
async def test_encoded_body_on_a_gated_call_is_refused(gate: Gate, accepted: bool) -> None:
    """§1.1: a gated call's gzip-encoded body cannot be inspected: 400 AmbiguousBody."""
    if accepted:
        gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    raw = gzip.compress(json.dumps(order()).encode())
    status, body = await _post(
        gate,
        orders_path(),
        data=raw,
        json=None,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert (status, body["errorName"]) == (400, "AmbiguousBody")
    assert _forwarded(gate) == []


async def test_a_second_content_encoding_header_is_not_overlooked(gate: Gate) -> None:
    """§2 ambiguous body: identity then gzip could be read two ways: refused, never forwarded."""
    headers = [
        *auth().items(),
        ("Content-Type", "application/json"),
        ("Content-Encoding", "identity"),
        ("Content-Encoding", "gzip"),
    ]
    body = json.dumps({"status": "cancelled"}).encode()
    response = await gate.client.patch(f"{orders_path()}/order-1", data=body, headers=headers)
    assert response.status == 400
    assert (await response.json())["errorName"] == "AmbiguousBody"
    assert gate.upstream.sandbox.received == []


@pytest.mark.parametrize("header", ["X_Original_URL", "X_Rewrite_URL", "X_HTTP_Method_Override"])
async def test_underscore_spellings_of_override_headers_are_dropped(
    gate: Gate, header: str
) -> None:
    """§2: IIS reads X_Original_URL as X-Original-URL, so the look-alike never reaches it."""
    response = await gate.client.get("/v1/customers", headers={header: orders_path()})
    assert response.status == 200
    (received,) = gate.upstream.sandbox.received
    assert header not in received.headers
    assert header.replace("_", "-") not in received.headers


async def test_an_ambiguous_method_refusal_says_blocked(gate: Gate) -> None:
    """§2: every answer to a gated call carries X-Gate-Decision, a refused override too."""
    response = await gate.client.get(
        orders_path(), headers={**auth(), "X-HTTP-Method-Override": "POST"}
    )
    assert response.status == 400
    assert response.headers["X-Gate-Decision"] == "blocked"
