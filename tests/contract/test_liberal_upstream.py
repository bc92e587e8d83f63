"""Issue 28, over raw sockets: what a liberal upstream (IIS, .NET, Java) makes of a call.

Such an upstream percent-decodes, drops ``;params`` and trailing dots and
blanks of a segment, resolves dot segments and folds case both ways (``ı`` is
``I``, ``ſ`` is ``S``): a path or JSON key it reads as a gated call must be
gated as that call or refused. The partner has not confirmed acceptance, so
any purchase or edit the sandbox receives got past the gate.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gate.sandbox import make_token
from tests.conftest import Gate
from tests.contract.conftest import RawResponse, exchange
from tests.support import CUSTOMER, PARTNER_A, confirmation, order

_C = f"/v1/customers/{CUSTOMER}"
# Every default gated route, with a body that makes it gated.
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", f"{_C}/orders", order()),
    ("PATCH", f"{_C}/orders/order-1", order()),
    ("POST", f"{_C}/carts/cart-1/checkout", {}),
    ("POST", f"{_C}/subscriptions/sub-1/upgrades", {}),
    ("POST", f"{_C}/subscriptions/sub-1/transitions", {}),
    ("POST", f"{_C}/subscriptions/sub-1/conversions", {}),
    ("POST", f"{_C}/migrations/newcommerce", {}),
    ("PATCH", f"{_C}/subscriptions/sub-1", {"quantity": 50}),
    ("POST", f"{_C}/agreements", confirmation()),
]
ROUTE_IDS = [
    "order",
    "order-patch",
    "checkout",
    "upgrade",
    "transition",
    "conversion",
    "migration",
    "seat-change",
    "confirmation",
]
# A last segment a liberal upstream drops (or resolves away), in every form the issue names.
DROPPED = [
    ";a", ";", ";a=1", "%20", "%09", "...", ".%20", "%20.", ".;a", ";a.", "%2e%2e%2e",
    "%20%20", ".%09", "%0a", "x/..;a", "x/..%20", "%20;a",
]  # fmt: skip
# A suffix on a fixed segment (or the customer) that such an upstream drops.
SUFFIXES = [";a", ";", ".", "%20", "%09", ".%20", "%20;x=1"]


def _request(method: str, target: str, doc: Any = None, raw: bytes | None = None) -> bytes:
    body = raw if raw is not None else json.dumps(doc).encode()
    return (
        f"{method} {target} HTTP/1.1\r\nHost: gate\r\n"
        f"Authorization: Bearer {make_token(PARTNER_A)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _port(gate: Gate) -> int:
    port = gate.client.server.port
    assert port is not None
    return port


def _changes(gate: Gate) -> list[tuple[str, str]]:
    """Every call the sandbox received except reads (the gate's lookups and seat reads)."""
    return [(r.method, r.path) for r in gate.upstream.sandbox.received if r.method != "GET"]


async def _send(gate: Gate, method: str, target: str, doc: Any) -> RawResponse:
    (response,) = await exchange(_port(gate), _request(method, target, doc))
    return response


def _error_name(response: RawResponse) -> str:
    return str(json.loads(response.body).get("errorName"))


def _variants(path: str) -> list[str]:
    """The path with each droppable suffix on each fixed segment and on the customer."""
    segments = path.strip("/").split("/")
    found = []
    for at, segment in enumerate(segments):
        if segment.endswith("-1"):  # a placeholder: a suffix there only names another id
            continue
        for suffix in SUFFIXES:
            found.append("/" + "/".join([*segments[:at], segment + suffix, *segments[at + 1 :]]))
    return found


@pytest.mark.parametrize(("method", "path", "doc"), ROUTES, ids=ROUTE_IDS)
async def test_a_dropped_last_segment_never_reaches_the_upstream(
    gate: Gate, method: str, path: str, doc: Any
) -> None:
    """§2/issue 28: `.../orders/;a`, `/%20`, `/...` and kin are refused on every gated route."""
    answers = {extra: await _send(gate, method, f"{path}/{extra}", doc) for extra in DROPPED}
    wrong = {
        extra: (r.status, _error_name(r))
        for extra, r in answers.items()
        if (r.status, _error_name(r)) != (400, "AmbiguousPath")
    }
    assert wrong == {}
    assert _changes(gate) == []


@pytest.mark.parametrize(("method", "path", "doc"), ROUTES, ids=ROUTE_IDS)
async def test_a_droppable_suffix_on_any_segment_never_reaches_the_upstream(
    gate: Gate, method: str, path: str, doc: Any
) -> None:
    """§2/issue 28: ;params, trailing dots and blanks on any fixed segment are refused."""
    variants = _variants(path)
    answers = {variant: await _send(gate, method, variant, doc) for variant in variants}
    wrong = {v: r.status for v, r in answers.items() if _error_name(r) != "AmbiguousPath"}
    assert wrong == {}
    assert len(answers) >= len(SUFFIXES) * 4
    assert _changes(gate) == []


@pytest.mark.parametrize(
    ("method", "path", "doc"),
    [
        pytest.param("PATCH", f"{_C}/subscr%C4%B1ptions/sub-1", {"quantity": 50}, id="dotless-i"),
        pytest.param("PATCH", f"{_C}/%C5%BFub%C5%BFcriptions/sub-1", {"quantity": 5}, id="long-s"),
        pytest.param("POST", f"{_C}/carts/cart-1/chec%E2%84%AAout", {}, id="kelvin-sign"),
        pytest.param("POST", f"{_C}/m%C4%B1grat%C4%B1ons/newcommerce", {}, id="migrations"),
        pytest.param("POST", f"/v1/cu%C5%BFtomers/{CUSTOMER}/orders", order(), id="customers"),
    ],
)
async def test_a_letter_that_folds_to_ascii_never_reaches_the_upstream(
    gate: Gate, method: str, path: str, doc: Any
) -> None:
    """§2/issue 28: ı, ſ and the Kelvin sign spell a gated path to .NET or Java: refused."""
    response = await _send(gate, method, path, doc)
    assert (response.status, _error_name(response)) == (400, "AmbiguousPath")
    assert _changes(gate) == []


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"{_C}/subscr\u0131ptions/sub-1", id="dotless-i"),
        pytest.param(f"{_C}/\u017fubscriptions/sub-1", id="long-s"),
    ],
)
async def test_raw_utf8_letters_that_fold_to_ascii_never_reach_the_upstream(
    gate: Gate, path: str
) -> None:
    """§2/issue 28: raw UTF-8 bytes of ı or ſ in a gated path (not escaped) are refused too."""
    body = json.dumps({"quantity": 50}).encode()
    request = (
        f"PATCH {path} HTTP/1.1\r\nHost: gate\r\n"
        f"Authorization: Bearer {make_token(PARTNER_A)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    (response,) = await exchange(_port(gate), request)
    assert response.status == 400
    assert _changes(gate) == []


async def test_a_parameter_on_an_order_id_is_gated_as_that_order(gate: Gate) -> None:
    """R1/issue 28: `PATCH .../orders/order-1;a` is the same order edit, and is blocked."""
    response = await _send(gate, "PATCH", f"{_C}/orders/order-1;a", order())
    assert (response.status, _error_name(response)) == (403, "CustomerAcceptanceRequired")
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert _changes(gate) == []


async def test_an_ungated_liberal_reading_still_passes(gate: Gate) -> None:
    """R2/issue 28: a dropped segment on a read is forwarded as sent, with no decision."""
    response = await _send(gate, "GET", f"{_C}/orders/;a", None)
    assert response.status in (200, 404)
    assert "X-Gate-Decision" not in response.headers
    assert [r.path for r in gate.upstream.sandbox.received] == [f"{_C}/orders/;a"]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        pytest.param("GET", "http://[/x", id="open-bracket"),
        pytest.param("GET", "http://[s]@/", id="bracket-userinfo"),
        pytest.param("POST", f"http://[::1{_C}/orders", id="unclosed-ipv6-order"),
    ],
)
async def test_a_target_the_gate_cannot_read_is_a_400(gate: Gate, method: str, target: str) -> None:
    """§2/issue 28: a malformed absolute-form target is 400 AmbiguousPath, never a 500."""
    (response,) = await exchange(_port(gate), _request(method, target, order()))
    assert response.status == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert _error_name(response) == "AmbiguousPath"
    assert gate.upstream.sandbox.received == []


@pytest.mark.parametrize(
    ("method", "path", "raw", "expected"),
    [
        pytest.param(
            "PATCH",
            f"{_C}/subscriptions/sub-1",
            '{"quantity": 10, "quant\\u0131ty": 50}',
            (400, "AmbiguousBody"),
            id="same-quantity-and-dotless-i",
        ),
        pytest.param(
            "PATCH",
            f"{_C}/subscriptions/sub-1",
            '{"Quant\\u0131ty": 50}',
            (403, "CustomerAcceptanceRequired"),
            id="dotless-i-quantity-is-a-seat-change",
        ),
        pytest.param(
            "PATCH",
            f"{_C}/subscriptions/sub-1",
            '{"quantity": 10, "QUANT\\u0130TY": 50}',
            (400, "AmbiguousBody"),
            id="dotted-capital-i",
        ),
        pytest.param(
            "POST",
            f"{_C}/orders",
            '{"lineItems": [], "L\\u0131neItems": [{"offerId": "x", "quantity": 5}]}',
            (400, "AmbiguousBody"),
            id="line-items-twice",
        ),
        pytest.param(
            "PATCH",
            f"{_C}/orders/order-1",
            '{"status": "cancelled", "L\\u0131neItems": [{"offerId": "x", "quantity": 5}]}',
            (403, "CustomerAcceptanceRequired"),
            id="cancel-with-dotless-i-line-items",
        ),
        pytest.param(
            "PATCH",
            f"{_C}/orders/order-1",
            '{"status": "active", "\\u017ftatus": "cancelled"}',
            (400, "AmbiguousBody"),
            id="status-and-long-s",
        ),
    ],
)
async def test_json_keys_are_folded_as_dotnet_folds_them(
    gate: Gate, method: str, path: str, raw: str, expected: tuple[int, str]
) -> None:
    """§1.1/issue 28: a key .NET upper-cases to a known key is that key, or a repeat of it."""
    (response,) = await exchange(_port(gate), _request(method, path, raw=raw.encode()))
    assert (response.status, _error_name(response)) == expected
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert _changes(gate) == []
