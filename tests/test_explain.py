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


# -- Partner Center today (DESIGN §1.2): edit fields, what counts, the sources -------------

PROFILE_2026 = {
    "agreement_types": ["MicrosoftCustomerAgreement"],
    "accepted_since": "2023-04-01T00:00:00Z",
    "subscription_edits": ["quantity", "termDuration", "billingCycle",
                           "scheduledNextTermInstructions"],
}  # fmt: skip
TERMS_ONLY = {"subscription_edits": ["termDuration", "billingCycle"]}
SUBSCRIPTION = {"id": "s1", "quantity": 10, "termDuration": "P1Y", "billingCycle": "monthly",
                "scheduledNextTermInstructions": None}  # fmt: skip


def edit(body: Any, current: Any = None, **policy: Any) -> dict[str, str]:
    """explain for a subscription PATCH under ``policy``, with the subscription now if given."""
    raw = json.dumps(body).encode()
    now = current if isinstance(current, bytes) or current is None else json.dumps(current).encode()
    lines = explain(Settings(policy=policy), "PATCH", f"{C}/subscriptions/s1", None, raw, now)
    return {label: value.strip() for label, _, value in (line.partition(":") for line in lines)}


@pytest.mark.parametrize(
    ("policy", "kinds", "when"),
    [
        pytest.param(PROFILE_2026, "seat_change or term_change (by the fields the body changes)",
                     "yes, when the body has a changed quantity (seat_change), or a changed "
                     "termDuration, a changed billingCycle or scheduledNextTermInstructions set "
                     "(term_change)", id="every-field"),
        pytest.param(TERMS_ONLY, "term_change (by the fields the body changes)",
                     "yes, when the body has a changed termDuration or a changed billingCycle "
                     "(term_change)", id="terms-only"),
        pytest.param({}, "seat_change", "yes, when the body's quantity differs from the current "
                     "one", id="seat-changes"),
    ],
)  # fmt: skip
def test_subscription_edit_kinds_without_a_body(
    policy: dict[str, Any], kinds: str, when: str
) -> None:
    """R1/§1.2: explain names term_change and the fields that make each kind."""
    out = run("PATCH", f"{C}/subscriptions/s1", policy=policy)
    assert out["transaction"] == kinds
    assert out["gated"] == when


@pytest.mark.parametrize(
    ("body", "names", "kind", "gated"),
    [
        pytest.param({"termDuration": "P1M"}, "termDuration",
                     "term_change if termDuration differs, else not gated",
                     "yes, if a named field differs", id="term"),
        pytest.param({"Quantity": 12, "BillingCycle": "annual"}, "quantity, billingCycle",
                     "seat_change if quantity differs from the current one, else term_change if "
                     "billingCycle differs, else not gated", "yes, if a named field differs",
                     id="quantity-and-billing-pascal"),
        pytest.param({"scheduledNextTermInstructions": {"product": {"skuId": "0001"}}},
                     "scheduledNextTermInstructions",
                     "term_change (scheduledNextTermInstructions is set)", "yes", id="next-term"),
    ],
)  # fmt: skip
def test_edit_fields_offline_say_what_each_makes_if_it_differs(
    body: Any, names: str, kind: str, gated: str
) -> None:
    """§1.2: without the current subscription, each named field is a change only if it differs."""
    out = edit(body, **PROFILE_2026)
    assert out["body"] == f"names {names}"
    assert out["current"].startswith("unknown offline")
    assert out["edit"] == kind
    assert out["gated"] == gated
    if gated == "yes":  # scheduledNextTermInstructions set: a change whatever the current is
        assert out["unaccepted"] == (
            "blocked (403 CustomerAcceptanceRequired, not_accepted), not forwarded"
        )
    else:
        assert out["unaccepted"].startswith("if a named field differs: blocked (403")
        assert out["unaccepted"].endswith("; else not gated")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"nickname": "HQ"}, id="no-edit-field"),
        pytest.param({"scheduledNextTermInstructions": None}, id="next-term-null"),
    ],
)
def test_a_body_naming_no_edit_field_is_not_gated(body: Any) -> None:
    """§1.2: scheduledNextTermInstructions counts only when not null; other fields never."""
    out = edit(body, **PROFILE_2026)
    assert out["body"].startswith("names none of quantity, termDuration")
    assert out["gated"] == "no (forwarded untouched, no acceptance lookup)"


@pytest.mark.parametrize(
    ("body", "kind", "changes"),
    [
        pytest.param({"quantity": 12}, "seat_change", "changes quantity", id="quantity"),
        pytest.param({"termDuration": "P1M"}, "term_change", "changes termDuration",
                     id="term-duration"),
        pytest.param({"billingCycle": "annual"}, "term_change", "changes billingCycle",
                     id="billing-cycle"),
        pytest.param({"scheduledNextTermInstructions": {"x": 1}}, "term_change",
                     "changes scheduledNextTermInstructions", id="next-term"),
        pytest.param({"quantity": 12, "termDuration": "P1M"}, "seat_change",
                     "changes quantity, termDuration", id="both-kinds"),
        pytest.param({"quantity": 10, "termDuration": "P1M"}, "term_change",
                     "changes termDuration; same quantity", id="same-quantity-new-term"),
    ],
)  # fmt: skip
def test_current_subscription_names_the_kind(body: Any, kind: str, changes: str) -> None:
    """§1.2: with --current, explain compares as the gate does and names the transaction kind."""
    out = edit(body, SUBSCRIPTION, **PROFILE_2026)
    assert out["current"] == changes
    assert out["edit"] == kind
    assert out["gated"] == "yes"
    assert (
        out["unaccepted"] == "blocked (403 CustomerAcceptanceRequired, not_accepted), not forwarded"
    )


@pytest.mark.parametrize(
    ("body", "policy"),
    [
        pytest.param({"quantity": 10, "termDuration": "p1y", "BillingCycle": "MONTHLY"},
                     PROFILE_2026, id="same-values-any-case"),
        pytest.param({"quantity": 10, "termDuration": "P1M"}, {}, id="term-not-gated-by-default"),
    ],
)  # fmt: skip
def test_an_edit_that_changes_no_gated_field_is_not_gated(
    body: Any, policy: dict[str, Any]
) -> None:
    """§1.1/§1.2: the same values (strings compared case-insensitively) or ungated fields pass."""
    out = edit(body, SUBSCRIPTION, **policy)
    assert out["current"].startswith("changes no gated field; same quantity")
    assert out["gated"].startswith("no: it changes no gated field")
    assert "edit" not in out


def test_an_unreadable_current_subscription_counts_every_named_field() -> None:
    """§1.1: an unreadable subscription makes every named field a change, as in the gate."""
    out = edit({"quantity": 10, "billingCycle": "monthly"}, b"<html>", **PROFILE_2026)
    assert out["current"] == "changes quantity, billingCycle"
    assert out["edit"] == "seat_change"


def test_a_body_that_is_not_json_is_a_seat_change() -> None:
    """§1.1: a subscription PATCH whose body is not JSON is treated as a seat change."""
    lines = explain(Settings(policy=PROFILE_2026), "PATCH", f"{C}/subscriptions/s1", None, b"x=1")
    assert "body:        not JSON: treated as a seat change (§1.1)" in lines
    assert "gated:       yes" in lines


@pytest.mark.parametrize(
    ("policy", "lookup", "counts", "direct"),
    [
        pytest.param({}, "GET .../agreements?agreementType=*, then GET "
                     ".../directSignedMicrosoftCustomerAgreementStatus when no agreement counts",
                     "an agreement of type MicrosoftCloudAgreement or MicrosoftCustomerAgreement, "
                     "any date", "direct (the customer accepted in the Microsoft 365 admin center)",
                     id="defaults"),
        pytest.param(PROFILE_2026, "GET .../agreements?agreementType=MicrosoftCustomerAgreement, "
                     "then GET .../directSignedMicrosoftCustomerAgreementStatus when no "
                     "agreement counts", "an agreement of type MicrosoftCustomerAgreement, dated "
                     "2023-04-01T00:00:00Z or later (policy.accepted_since)",
                     "direct (the customer accepted", id="profile-2026"),
        pytest.param({"direct_acceptance": False}, "GET .../agreements?agreementType=*",
                     "an agreement of type MicrosoftCloudAgreement or MicrosoftCustomerAgreement, "
                     "any date", "direct off (policy.direct_acceptance = false)", id="direct-off"),
        pytest.param({"agreement_types": ["MicrosoftCloudAgreement"]},
                     "GET .../agreements?agreementType=MicrosoftCloudAgreement",
                     "an agreement of type MicrosoftCloudAgreement, any date",
                     "direct not asked (MicrosoftCustomerAgreement is not in "
                     "policy.agreement_types)", id="cloud-only"),
    ],
)  # fmt: skip
def test_what_confirms_a_pair(
    policy: dict[str, Any], lookup: str, counts: str, direct: str
) -> None:
    """R4: explain names the lookup, what counts under the policy keys, and the three sources."""
    out = run("POST", f"{C}/orders", policy=policy)
    assert out["lookup"] == f"{lookup} (when the pair is not cached)"
    assert out["counts"] == counts
    sources = out["sources"]
    assert sources.startswith("agreement (a listed agreement that counts), " + direct)
    assert "confirmation (a confirmation through the gate that counts)" in sources


@pytest.mark.parametrize(
    ("policy", "reasons"),
    [
        pytest.param({}, "no_agreement", id="defaults"),
        pytest.param(PROFILE_2026, "no_agreement, type_not_counted, before_accepted_since",
                     id="profile-2026"),
    ],
)  # fmt: skip
def test_the_refusal_names_its_reasons_and_both_ways_out(
    policy: dict[str, Any], reasons: str
) -> None:
    """§2/§1.2: the 403 names why (as the policy can) and both ways out."""
    out = run("POST", f"{C}/orders", policy=policy)
    assert out["refusal"].startswith(f"403 13605 names why ({reasons}) and both ways out")
    assert "Microsoft 365 admin center" in out["refusal"]
    observed = run("POST", f"{C}/orders", policy={**policy, "mode": "observe"})
    assert "refusal" not in observed


CUSTOMER_AGREEMENT = {"type": "MicrosoftCustomerAgreement",
                      "templateId": "117a77b0-9360-443b-8795-c6dedc750cf9"}  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "policy", "counted", "says"),
    [
        pytest.param(confirmation(), {}, True, "a MicrosoftCloudAgreement (in "
                     "policy.agreement_types), its dateAgreed (any date counts)",
                     id="cloud-defaults"),
        pytest.param(confirmation(), PROFILE_2026, False, "a MicrosoftCloudAgreement (not in "
                     "policy.agreement_types)", id="cloud-2026"),
        pytest.param(confirmation(**CUSTOMER_AGREEMENT), PROFILE_2026, True,
                     "a MicrosoftCustomerAgreement (in policy.agreement_types), its dateAgreed, "
                     "counted on or after 2023-04-01T00:00:00Z", id="customer-agreement-2026"),
        pytest.param(confirmation(**CUSTOMER_AGREEMENT, dateAgreed="2021-06-01"), PROFILE_2026,
                     False, "counted on or after 2023-04-01T00:00:00Z", id="dated-before-2026"),
        pytest.param({"attestationId": "att-1"}, PROFILE_2026, True, "a MicrosoftCustomerAgreement "
                     "(in policy.agreement_types), dated the day it is made", id="attestation"),
    ],
)  # fmt: skip
def test_whether_a_confirmation_counts(
    doc: dict[str, Any], policy: dict[str, Any], counted: bool, says: str
) -> None:
    """R6/R5: a valid confirmation marks the pair accepted only if what it confirms counts."""
    out = run("POST", f"{C}/agreements", doc, policy=policy)
    assert out["body"].startswith("R6 check passed")
    assert out["counts"].startswith("yes: " if counted else "no: ")
    assert says in out["counts"]
    marks = "a 2xx marks the pair accepted" if counted else "a 2xx does not mark the pair"
    assert marks in out["decision"]


def test_an_attestation_confirmation_is_checked_for_its_id_only() -> None:
    """R6/§1.2: a confirmation naming an attestation needs nothing else; explain says so."""
    out = run("POST", f"{C}/agreements", {"AttestationId": "att-1"})
    assert out["body"] == (
        "R6 check passed (names an attestation: nothing else is checked; the upstream "
        "decides the rest)"
    )
    empty = run("POST", f"{C}/agreements", {"attestationId": ""})
    assert empty["problem"].startswith("attestationId:")
