"""DESIGN §1 R1-R4, R7-R9: which calls are blocked, allowed, flagged or exempt."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gate, StartGate
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    PARTNER_B,
    RESELLER,
    agreements_path,
    auth,
    decisions,
    order,
    orders_path,
    subscription_path,
)

_C = f"/v1/customers/{CUSTOMER}"

# Every new_purchase route of R1, with a body that buys something.
NEW_PURCHASES = [
    pytest.param("POST", f"{_C}/orders", order(), id="create-order"),
    pytest.param("PATCH", f"{_C}/orders/order-1", order(), id="add-order-line-items"),
    pytest.param("POST", f"{_C}/carts/cart-1/checkout", {}, id="cart-checkout"),
    pytest.param(
        "POST", f"{_C}/subscriptions/sub-1/upgrades", {"targetOfferId": "x"}, id="upgrade"
    ),
    pytest.param(
        "POST", f"{_C}/subscriptions/sub-1/transitions", {"toOfferId": "x"}, id="transition"
    ),
    pytest.param(
        "POST", f"{_C}/subscriptions/sub-1/conversions", {"offerId": "x"}, id="trial-conversion"
    ),
    pytest.param("POST", f"{_C}/migrations/newcommerce", {"currentSubscriptionId": "s"},
                 id="migrate-new-commerce"),
]  # fmt: skip


def _lookups(gate: Gate, customer: str = CUSTOMER) -> int:
    return len(gate.upstream.sandbox.calls("GET", agreements_path(customer)))


def _forwarded(gate: Gate, method: str, path: str) -> int:
    return len(gate.upstream.sandbox.calls(method, path))


# -- R1: the new_purchase routes -------------------------------------------------


async def test_unconfirmed_order_is_blocked_and_never_forwarded(gate: Gate) -> None:
    """R1: creating an order for a customer without confirmed acceptance is refused with 403."""
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body["code"] == 13605
    assert body["errorName"] == "CustomerAcceptanceRequired"
    assert body["source"] == "gate"
    assert CUSTOMER in body["description"] and PARTNER_A in body["description"]
    assert f"POST /v1/customers/{CUSTOMER}/agreements" in body["description"]
    assert body["data"][0]["transaction"] == "new_purchase"
    assert gate.upstream.sandbox.calls("POST", "/orders") == []
    assert decisions(gate.logs)[-1]["decision"] == "blocked"


async def test_confirmed_order_is_allowed_and_forwarded(gate: Gate) -> None:
    """R4: a customer whose agreements list an MCA for this partner may order."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "allowed"
    assert len(gate.upstream.sandbox.calls("POST", "/orders")) == 1


@pytest.mark.parametrize(("method", "path", "doc"), NEW_PURCHASES)
async def test_every_new_purchase_route_is_blocked_when_unconfirmed(
    gate: Gate, method: str, path: str, doc: dict[str, Any]
) -> None:
    """R1: each new_purchase route is refused with 403 13605 and never forwarded without MCA."""
    response = await gate.client.request(method, path, json=doc, headers=auth())
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"
    body = await response.json()
    assert body["code"] == 13605
    assert body["data"][0]["transaction"] == "new_purchase"
    assert _forwarded(gate, method, path) == 0


@pytest.mark.parametrize(("method", "path", "doc"), NEW_PURCHASES)
async def test_every_new_purchase_route_is_allowed_when_confirmed(
    gate: Gate, method: str, path: str, doc: dict[str, Any]
) -> None:
    """R1: each new_purchase route is forwarded with X-Gate-Decision allowed once MCA is on file."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await gate.client.request(method, path, json=doc, headers=auth())
    assert response.status in (200, 201)
    assert response.headers["X-Gate-Decision"] == "allowed"
    assert _forwarded(gate, method, path) == 1
    assert decisions(gate.logs)[-1]["transaction"] == "new_purchase"


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"status": "cancelled"}, id="camelCase"),
        pytest.param({"Status": "Cancelled"}, id="PascalCase"),
        pytest.param({"status": "CANCELLED", "lineItems": []}, id="empty-line-items"),
    ],
)
async def test_cancel_only_order_patch_passes_without_header_or_lookup(
    gate: Gate, doc: dict[str, Any]
) -> None:
    """R1: an order PATCH that only cancels is not a purchase: forwarded, no header, no lookup."""
    path = f"{_C}/orders/order-1"
    response = await gate.client.patch(path, json=doc)
    assert response.status == 200
    assert "X-Gate-Decision" not in response.headers
    assert _forwarded(gate, "PATCH", path) == 1
    assert _lookups(gate) == 0
    assert decisions(gate.logs) == []


async def test_cancel_with_line_items_is_still_a_purchase(gate: Gate) -> None:
    """R1: an order PATCH that sets status cancelled but also adds line items is gated."""
    path = f"{_C}/orders/order-1"
    doc = {"Status": "Cancelled", "LineItems": order()["lineItems"]}
    response = await gate.client.patch(path, json=doc, headers=auth())
    assert response.status == 403
    assert _forwarded(gate, "PATCH", path) == 0


async def test_pascal_case_order_is_gated(gate: Gate) -> None:
    """§1.1: a .NET SDK order ("LineItems", "Quantity") is gated like a camelCase one."""
    doc = {"LineItems": [{"LineItemNumber": 0, "OfferId": "CFQ7TTC0LH18:0001", "Quantity": 5}]}
    path = f"{_C}/orders/order-1"
    response = await gate.client.patch(path, json=doc, headers=auth())
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert _forwarded(gate, "PATCH", path) == 0


# -- R1: seat_change -------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"id": "sub-1", "quantity": 12, "status": "active"}, id="camelCase"),
        pytest.param({"Id": "sub-1", "Quantity": 12, "Status": "Active"}, id="PascalCase"),
        pytest.param({"quantity": "12"}, id="quantity-as-string"),
    ],
)
async def test_subscription_patch_with_other_quantity_is_blocked(
    gate: Gate, doc: dict[str, Any]
) -> None:
    """R1 seat_change: a subscription PATCH with a quantity other than the current 10 is blocked."""
    response = await gate.client.patch(subscription_path(), json=doc, headers=auth())
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"
    body = await response.json()
    assert body["data"][0]["transaction"] == "seat_change"
    assert _forwarded(gate, "PATCH", subscription_path()) == 0
    reads = gate.upstream.sandbox.calls("GET", subscription_path())
    assert len(reads) == 1
    assert reads[0].headers["Authorization"] == auth()["Authorization"]


async def test_confirmed_seat_change_is_allowed_without_reading_subscription(gate: Gate) -> None:
    """§1.1: for a confirmed pair the seat change is allowed and the subscription is not read."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await gate.client.patch(subscription_path(), json={"quantity": 12}, headers=auth())
    assert response.status == 200
    assert response.headers["X-Gate-Decision"] == "allowed"
    assert _forwarded(gate, "PATCH", subscription_path()) == 1
    assert gate.upstream.sandbox.calls("GET", subscription_path()) == []


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"id": "sub-1", "quantity": 10, "status": "active"}, id="same-quantity"),
        pytest.param({"Id": "sub-1", "Quantity": 10}, id="same-quantity-PascalCase"),
        pytest.param({"friendlyName": "Contoso seats"}, id="nickname"),
        pytest.param({"status": "suspended"}, id="suspend"),
        pytest.param({"Status": "Active"}, id="reactivate-PascalCase"),
        pytest.param({"autoRenewEnabled": False}, id="auto-renew"),
    ],
)
async def test_subscription_patch_without_seat_change_is_forwarded_ungated(
    gate: Gate, doc: dict[str, Any]
) -> None:
    """§1.1: no quantity, or the current quantity, is not a seat change: no X-Gate-Decision."""
    response = await gate.client.patch(subscription_path(), json=doc, headers=auth())
    assert response.status == 200
    assert "X-Gate-Decision" not in response.headers
    assert _forwarded(gate, "PATCH", subscription_path()) == 1
    assert decisions(gate.logs) == []


async def test_unreadable_subscription_is_treated_as_seat_change(gate: Gate) -> None:
    """§1.1: when the current quantity cannot be read (GET is 500) the PATCH is a seat change."""
    gate.upstream.sandbox.knobs.subscription_status = 500
    response = await gate.client.patch(subscription_path(), json={"quantity": 10}, headers=auth())
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert len(gate.upstream.sandbox.calls("GET", subscription_path())) == 1
    assert _forwarded(gate, "PATCH", subscription_path()) == 0


async def test_non_json_subscription_patch_is_treated_as_seat_change(gate: Gate) -> None:
    """§1.1: a subscription PATCH whose body is not JSON is a seat change and is blocked."""
    response = await gate.client.patch(
        subscription_path(),
        data=b"quantity=12",
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert _forwarded(gate, "PATCH", subscription_path()) == 0


async def test_subscription_edits_all_gates_every_patch(start_gate: StartGate) -> None:
    """§1.1: with subscription_edits = "all" even a nickname PATCH is gated as seat_change."""
    gate = await start_gate(policy={"subscription_edits": "all"})
    response = await gate.client.patch(
        subscription_path(), json={"friendlyName": "Contoso"}, headers=auth()
    )
    assert response.status == 403
    assert (await response.json())["data"][0]["transaction"] == "seat_change"
    assert _forwarded(gate, "PATCH", subscription_path()) == 0
    assert gate.upstream.sandbox.calls("GET", subscription_path()) == []


# -- R2: not gated ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "doc"),
    [
        pytest.param("GET", f"{_C}/orders", None, id="list-orders"),
        pytest.param("GET", f"{_C}/orders/order-1", None, id="read-order"),
        pytest.param("GET", f"{_C}/subscriptions/sub-1", None, id="read-subscription"),
        pytest.param("GET", f"{_C}/agreements", None, id="read-agreements"),
        pytest.param("POST", "/v1/customers", {"companyProfile": {"domain": "x"}}, id="create"),
        pytest.param("DELETE", f"{_C}/carts/cart-1", None, id="other-call"),
        pytest.param("POST", f"{_C}/carts", order(), id="create-cart"),
    ],
)
async def test_ungated_calls_pass_without_lookup(
    gate: Gate, method: str, path: str, doc: dict[str, Any] | None
) -> None:
    """R2: reads, customer creation and other calls pass with no agreements lookup and no header."""
    response = await gate.client.request(method, path, json=doc, headers=auth())
    assert response.status == 200
    assert "X-Gate-Decision" not in response.headers
    received = gate.upstream.sandbox.received
    assert [(r.method, r.path) for r in received] == [(method, path)]  # no lookup, no read
    assert decisions(gate.logs) == []


# -- R3: per-partner independence -------------------------------------------------


async def test_each_partner_needs_its_own_confirmation(gate: Gate) -> None:
    """R3: partner A's confirmation allows A's order but not partner B's for the same customer."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    allowed = await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_A))
    blocked = await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_B))
    assert allowed.status == 201
    assert allowed.headers["X-Gate-Decision"] == "allowed"
    assert blocked.status == 403
    assert PARTNER_B in (await blocked.json())["description"]
    assert len(gate.upstream.sandbox.calls("POST", "/orders")) == 1
    assert [line["partner"] for line in decisions(gate.logs)] == [PARTNER_A, PARTNER_B]


async def test_tenant_ids_compare_case_insensitively(gate: Gate) -> None:
    """§1.1: an upper-case customer id in the path and tid in the token name the same pair."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await gate.client.post(
        orders_path(CUSTOMER.upper()), json=order(), headers=auth(PARTNER_A.upper())
    )
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "allowed"
    line = decisions(gate.logs)[-1]
    assert (line["partner"], line["customer"]) == (PARTNER_A, CUSTOMER)


# -- R4: what a lookup answer means ------------------------------------------------


@pytest.mark.parametrize(
    ("items", "verdict"),
    [
        pytest.param(
            [{"type": "MicrosoftCloudAgreement", "dateAgreed": "2024-01-01T00:00:00Z"}],
            "allowed",
            id="mca",
        ),
        pytest.param(
            [
                {
                    "type": "MicrosoftCloudAgreement",
                    "templateId": "00000000-0000-4000-8000-000000000000",
                    "dateAgreed": "2019-02-03T00:00:00Z",
                }
            ],
            "allowed",
            id="old-template-and-date",
        ),
        pytest.param(
            [{"type": "MicrosoftCustomerAgreement"}, {"type": "microsoftcloudagreement"}],
            "allowed",
            id="one-of-several",
        ),
        pytest.param([], "blocked", id="empty-list"),
        pytest.param(
            [{"type": "MicrosoftCustomerAgreement", "dateAgreed": "2021-01-01T00:00:00Z"}],
            "allowed",
            id="customer-agreement",
        ),
        pytest.param([{"type": "MicrosoftPartnerAgreement"}], "blocked", id="other-type"),
    ],
)
async def test_lookup_answer_decides_acceptance(
    gate: Gate, items: list[dict[str, Any]], verdict: str
) -> None:
    """R4 defaults: either agreement type (any template, any date) confirms; other types do not."""
    gate.upstream.sandbox.agreements[(PARTNER_A, CUSTOMER)] = items
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.headers["X-Gate-Decision"] == verdict
    assert response.status == (201 if verdict == "allowed" else 403)
    assert _lookups(gate) == 1


async def test_lookup_404_means_not_confirmed(gate: Gate) -> None:
    """R4: a 404 from the agreements endpoint means not confirmed: the order is blocked (403)."""
    gate.upstream.sandbox.knobs.agreements_status = 404
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 403
    assert (await response.json())["errorName"] == "CustomerAcceptanceRequired"
    assert gate.upstream.sandbox.calls("POST", "/orders") == []


# -- R7: enforcement date, observe mode, rollout, per-partner override -----------


@pytest.mark.parametrize(
    ("sections", "reason"),
    [
        pytest.param(
            {"policy": {"enforce_from": "2999-01-01T00:00:00Z"}},
            "before_enforcement",
            id="enforce-from-future",
        ),
        pytest.param({"policy": {"mode": "observe"}}, "observe_mode", id="observe-mode"),
        pytest.param(
            {"policy": {"partners": {PARTNER_A: {"mode": "observe"}}}},
            "observe_mode",
            id="partner-observe",
        ),
        pytest.param({"policy": {"enforce_percent": 0}}, "rollout_observed", id="percent-0"),
    ],
)
async def test_unenforced_policy_forwards_with_would_block(
    start_gate: StartGate, sections: dict[str, Any], reason: str
) -> None:
    """R7: before enforce_from, in observe mode or out of rollout, orders pass as would-block."""
    gate = await start_gate(**sections)
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "would-block"
    assert len(gate.upstream.sandbox.calls("POST", "/orders")) == 1
    line = decisions(gate.logs)[-1]
    assert (line["decision"], line["reason"]) == ("would-block", reason)


async def test_partner_override_off_is_exempt_without_lookup(start_gate: StartGate) -> None:
    """R7: a partner whose policy override is mode=off is exempt and no lookup is made."""
    gate = await start_gate(policy={"partners": {PARTNER_A.upper(): {"mode": "off"}}})
    exempt = await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_A))
    assert exempt.status == 201
    assert exempt.headers["X-Gate-Decision"] == "exempt"
    assert _lookups(gate) == 0
    other = await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_B))
    assert other.status == 403


async def test_enforce_from_in_the_past_blocks(start_gate: StartGate) -> None:
    """R7: once enforce_from has passed, an unconfirmed order is blocked."""
    gate = await start_gate(policy={"enforce_from": "2020-01-01T00:00:00Z"})
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 403
    assert response.headers["X-Gate-Decision"] == "blocked"


# -- R8: national clouds -------------------------------------------------------------


@pytest.mark.parametrize("cloud", ["usgov", "germany", "china"])
async def test_national_cloud_is_exempt_without_lookup(start_gate: StartGate, cloud: str) -> None:
    """R8: behind a national-cloud upstream gated calls are exempt and never looked up."""
    gate = await start_gate(upstream={"cloud": cloud})
    response = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "exempt"
    assert _lookups(gate) == 0
    assert decisions(gate.logs)[-1]["reason"] == "national_cloud"


# -- R9: indirect providers ----------------------------------------------------------


async def test_indirect_order_is_checked_against_the_provider(gate: Gate) -> None:
    """R9: an order with partnerIdOnRecord is decided by the caller's (provider's) acceptance."""
    gate.upstream.sandbox.accept(RESELLER, CUSTOMER)  # the reseller's own does not count
    response = await gate.client.post(orders_path(), json=order(RESELLER), headers=auth())
    assert response.status == 403
    assert PARTNER_A in (await response.json())["description"]
    lookup = gate.upstream.sandbox.calls("GET", agreements_path())[0]
    assert lookup.headers["Authorization"] == auth(PARTNER_A)["Authorization"]
    line = decisions(gate.logs)[-1]
    assert line["partner"] == PARTNER_A
    assert line["resellers"] == [RESELLER]


async def test_indirect_order_allowed_by_provider_acceptance_logs_reseller(gate: Gate) -> None:
    """R9: the provider's confirmation allows a reseller's order; the log names the reseller."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    doc = {"LineItems": [{"OfferId": "x", "Quantity": 1, "PartnerIdOnRecord": RESELLER.upper()}]}
    response = await gate.client.post(orders_path(), json=doc, headers=auth())
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "allowed"
    line = decisions(gate.logs)[-1]
    assert (line["partner"], line["resellers"], line["decision"]) == (
        PARTNER_A,
        [RESELLER],
        "allowed",
    )


@pytest.mark.parametrize(
    "sections",
    [
        pytest.param({"upstream": {"cloud": "usgov"}}, id="national-cloud"),
        pytest.param({"policy": {"mode": "off"}}, id="mode-off"),
    ],
)
@pytest.mark.parametrize(
    ("path", "raw", "headers"),
    [
        pytest.param(orders_path(), b'{"lineItems": []}', {}, id="no-token"),
        pytest.param(orders_path(), b'{"a": 1, "A": 2}', auth(), id="duplicate-key"),
    ],
)
async def test_exempt_traffic_is_never_refused(
    start_gate: StartGate,
    sections: dict[str, dict[str, str]],
    path: str,
    raw: bytes,
    headers: dict[str, str],
) -> None:
    """R8 / mode off: nothing is gated, so nothing is refused either; forwarded as exempt."""
    gate = await start_gate(**sections)
    response = await gate.client.post(
        path, data=raw, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.headers["X-Gate-Decision"] == "exempt"
    [received] = gate.upstream.sandbox.received
    assert received.body == raw


async def test_mode_off_lifts_gating_but_not_the_confirmation_check(start_gate: StartGate) -> None:
    """R6 vs R8: off exempts gated calls only; a national cloud has no confirmations to check."""
    bad = {"dateAgreed": "x"}
    off = await start_gate(policy={"mode": "off"})
    refused = await off.client.post(agreements_path(), json=bad, headers=auth())
    assert (await refused.json())["errorName"] == "InvalidAcceptance"
    assert off.upstream.sandbox.received == []
    usgov = await start_gate(upstream={"cloud": "usgov"})
    forwarded = await usgov.client.post(agreements_path(), json=bad, headers=auth())
    assert forwarded.headers["X-Gate-Decision"] == "exempt"
    assert len(usgov.upstream.sandbox.received) == 1
