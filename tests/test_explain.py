"""gate.explain with bodies: body rules, overrides, R6, and the decision for both pairs (§4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gate.config import Settings
from gate.explain import explain
from tests.support import (
    CONTACT_EMAIL,
    CONTACT_FIRST,
    CUSTOMER,
    PARTNER_A,
    RESELLER,
    confirmation,
    order,
)

C = f"/v1/customers/{CUSTOMER}"


def run(
    method: str, path: str, body: Any = None, partner: str | None = None, **config: Any
) -> dict[str, str]:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    lines = explain(Settings(**config), method, path, partner, raw)
    return {label: value.strip() for label, _, value in (line.partition(":") for line in lines)}


@pytest.mark.parametrize(
    ("body", "gated", "says"),
    [
        pytest.param({"status": "cancelled"}, "no (forwarded untouched, no acceptance lookup)",
                     "only cancels", id="cancel-only"),
        pytest.param({"Status": "CANCELLED", "LineItems": []}, "no (forwarded untouched, "
                     "no acceptance lookup)", "only cancels", id="cancel-only-pascal"),
        pytest.param(order(), "yes", "adds line items", id="adds-line-items"),
        pytest.param(b"not json", "yes", "(not JSON)", id="not-json"),
    ],
)  # fmt: skip
def test_order_edit_bodies(body: Any, gated: str, says: str) -> None:
    """R1/§1.1: an order PATCH that only cancels is not a purchase; PascalCase counts."""
    out = run("PATCH", f"{C}/orders/o1", body)
    assert out["rule"] == "add-order-line-items"
    assert out["gated"] == gated
    assert says in out["body"]


def test_subscription_edit_with_a_quantity() -> None:
    """§1.1: offline the current quantity is unknown: explain says when it is a seat change."""
    out = run("PATCH", f"{C}/subscriptions/s1", {"Quantity": 12})
    assert out["body"] == "asks for quantity 12"
    assert out["gated"] == (
        "a seat change if the quantity differs from the current one; "
        "with an unconfirmed pair the gate reads the subscription to compare"
    )
    assert out["accepted"] == "allowed (accepted), forwarded"
    assert out["unaccepted"] == (
        "if the quantity differs: blocked (403 CustomerAcceptanceRequired, not_accepted), "
        "not forwarded; else not gated"
    )


@pytest.mark.parametrize(
    ("config", "gated"),
    [
        pytest.param({}, "no (forwarded untouched, no acceptance lookup)", id="seat-changes"),
        pytest.param({"policy": {"subscription_edits": "all"}}, "yes", id="all"),
    ],
)
def test_subscription_edit_without_a_quantity(config: dict[str, Any], gated: str) -> None:
    """§1.1: no quantity is not gated under seat_changes, gated under all."""
    assert run("PATCH", f"{C}/subscriptions/s1", {"nickname": "x"}, **config)["gated"] == gated


def test_a_repeated_key_is_refused() -> None:
    """§1.1: a body repeating a key under any casing is refused before any decision."""
    out = run("POST", f"{C}/orders", b'{"lineItems": [], "LineItems": []}')
    assert out["body"].startswith("refused: 400 AmbiguousBody")
    assert out["decision"] == "blocked, not forwarded"


def test_resellers_are_named() -> None:
    """R9: an order on behalf of a reseller is checked against the caller; explain names it."""
    out = run("POST", f"{C}/orders", order(RESELLER))
    assert out["resellers"] == f"{RESELLER} (checked against the caller)"


def test_partner_override_and_rollout_bucket() -> None:
    """§3: the partner's override applies before the body is read; the bucket is shown."""
    off = {"policy": {"partners": {PARTNER_A: {"mode": "off"}}}}
    out = run("POST", f"{C}/orders", b'{"a": 1, "A": 2}', PARTNER_A, **off)
    assert out["decision"] == "exempt (policy_off)"
    assert out["body"].startswith("not read")
    half = run("POST", f"{C}/orders", order(), PARTNER_A, policy={"enforce_percent": 50})
    assert half["policy"].startswith("mode enforce (default) -> enforcement date passed -> ")
    assert half["policy"].endswith(("bucket is enforced", "bucket is observed"))
    assert half["unaccepted"].startswith(("blocked (403", "would-block (rollout_observed)"))
    unknown = run("POST", f"{C}/orders", order(), policy={"enforce_percent": 50})
    assert unknown["unaccepted"].endswith("pass --partner")


def test_policy_path_before_enforcement() -> None:
    """R7: before the enforcement date an unaccepted pair is forwarded as would-block."""
    out = run("POST", f"{C}/orders", order(), policy={"enforce_from": "2999-01-01T00:00:00Z"})
    assert out["policy"] == "mode enforce (default) -> enforcement date not reached"
    assert out["unaccepted"] == "would-block (before_enforcement), forwarded"


def test_a_valid_confirmation() -> None:
    """R6/R5: a complete confirmation passes the check and would mark the pair accepted."""
    out = run("POST", f"{C}/agreements", confirmation())
    assert out["body"] == "R6 check passed"
    assert out["decision"].startswith("allowed (confirmation)")


def test_an_invalid_confirmation_names_fields_never_values() -> None:
    """R6: each problem is printed by field name; the contact's values never appear."""
    doc = confirmation(dateAgreed="2999-01-01")
    doc["primaryContact"] = {**doc["primaryContact"], "email": "ada@"}
    lines = explain(Settings(), "POST", f"{C}/agreements", None, json.dumps(doc).encode())
    problems = [line for line in lines if line.startswith("problem:")]
    assert [p.split()[1] for p in problems] == ["dateAgreed:", "primaryContact.email:"]
    text = "\n".join(lines)
    assert "ada@" not in text and CONTACT_FIRST not in text and CONTACT_EMAIL not in text
    assert lines[-1] == "decision:    blocked (400 InvalidAcceptance), not forwarded"


def test_a_national_cloud_forwards_a_confirmation_unchecked() -> None:
    """R8: on a national cloud even a confirmation is forwarded as sent."""
    out = run("POST", f"{C}/agreements", {"x": 1}, upstream={"cloud": "usgov"})
    assert out["decision"] == "exempt (national_cloud)"


def test_pass_through_ignores_the_body() -> None:
    """R2: a call no rule matches passes whatever its body."""
    out = run("GET", f"{C}/orders", b'{"a": 1, "A": 2}')
    assert out["gated"].startswith("no (pass-through")
