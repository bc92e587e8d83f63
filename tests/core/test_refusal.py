"""gate.core.refusal: a blocked verdict as Partner Center's 403 13605, or the fail-closed 503."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gate.config import Settings
from gate.core.classify import Transaction
from gate.core.identity import Caller
from gate.core.policy import Decision, Reason, Verdict
from gate.core.refusal import refusal
from gate.errors import GateError
from gate.runtime import Runtime, compile_settings
from tests.support import CUSTOMER, PARTNER_A

ORDER = Transaction(kind="new_purchase", rule="create-order", when="always", customer=CUSTOMER)
CALLER = Caller(partner=PARTNER_A, customer=CUSTOMER)
NOT_ACCEPTED = Decision(verdict=Verdict.BLOCKED, reason=Reason.NOT_ACCEPTED)
LOOKUP_ERROR = Decision(verdict=Verdict.BLOCKED, reason=Reason.LOOKUP_ERROR)


def runtime(**config: Any) -> Runtime:
    return compile_settings(Settings(**config))


def parsed(error: GateError) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(error.body())
    return doc


def test_not_accepted_is_partner_centers_13605() -> None:
    """§2: 403, code 13605, naming the customer, the partner, the call and both ways out."""
    error = refusal(runtime(), NOT_ACCEPTED, ORDER, CALLER)
    doc = parsed(error)
    assert (error.status, doc["code"], doc["errorName"]) == (
        403,
        13605,
        "CustomerAcceptanceRequired",
    )
    assert doc["source"] == "gate"
    assert CUSTOMER in doc["description"] and PARTNER_A in doc["description"]
    assert "new_purchase" in doc["description"]
    assert "Microsoft 365 admin center" in doc["description"]  # direct_acceptance is on
    [data] = doc["data"]
    assert data == {
        "customer": CUSTOMER,
        "partner": PARTNER_A,
        "transaction": "new_purchase",
        "rule": "create-order",
        "reason": "not_accepted",
        "resolve": f"POST /v1/customers/{CUSTOMER}/agreements",
        "resolveByAttestation": "POST /v1/attestations/enhanced",
        "resolveByCustomer": "Microsoft 365 admin center",
    }
    assert "Retry-After" not in error.response_headers()
    assert error.response_headers()["Content-Type"].startswith("application/json")


def test_without_direct_acceptance_the_customer_way_is_not_offered() -> None:
    """R4 b off: the customer's own acceptance does not count, so it is not named as a way out."""
    error = refusal(runtime(policy={"direct_acceptance": False}), NOT_ACCEPTED, ORDER, CALLER)
    doc = parsed(error)
    assert "resolveByCustomer" not in doc["data"][0]
    assert "admin center" not in doc["description"]


@pytest.mark.parametrize(
    ("why", "said"),
    [
        pytest.param("no_agreement", "no agreement on record", id="no-agreement"),
        pytest.param("type_not_counted", "of a type that does not count", id="type"),
        pytest.param("before_accepted_since", "dated before the cut-off", id="before-cut-off"),
    ],
)
def test_the_lookups_reason_is_named(why: str, said: str) -> None:
    """The refusal says why the acceptance on record does not count."""
    doc = parsed(refusal(runtime(), NOT_ACCEPTED, ORDER, CALLER, why=why))
    assert said in doc["description"]
    assert doc["data"][0]["reason"] == why


def test_the_agreement_types_and_cut_off_are_named() -> None:
    """R4: the description names what would count: the types and accepted_since."""
    config = {
        "policy": {
            "agreement_types": ["MicrosoftCustomerAgreement"],
            "accepted_since": "2025-01-01T00:00:00Z",
        }
    }
    doc = parsed(refusal(runtime(**config), NOT_ACCEPTED, ORDER, CALLER))
    assert "Microsoft Customer Agreement dated 2025-01-01T00:00:00Z or later" in doc["description"]
    assert "Microsoft Cloud Agreement" not in doc["description"]


@pytest.mark.parametrize(
    ("configured", "upstream_wait", "expected"),
    [
        pytest.param(5, 0.0, "5", id="configured"),
        pytest.param(5, 12.2, "13", id="upstream-longer-rounded-up"),
        pytest.param(5, 2.0, "5", id="upstream-shorter"),
        pytest.param(1, 0.4, "1", id="a-fraction-rounds-up"),
    ],
)
def test_a_lookup_error_is_the_fail_closed_503_with_retry_after(
    configured: int, upstream_wait: float, expected: str
) -> None:
    """§2: 503 AcceptanceStatusUnavailable with Retry-After, the longer of config and upstream."""
    config = {"acceptance": {"retry_after_s": configured}}
    error = refusal(runtime(**config), LOOKUP_ERROR, ORDER, CALLER, retry_after_s=upstream_wait)
    doc = parsed(error)
    assert (error.status, doc["errorName"]) == (503, "AcceptanceStatusUnavailable")
    assert error.response_headers()["Retry-After"] == expected
    assert doc["data"] == [{"customer": CUSTOMER, "partner": PARTNER_A}]
