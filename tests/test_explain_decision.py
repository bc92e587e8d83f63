"""gate.explain_decision: the policy's decision for both pairs and what confirms one, as lines.

Driven directly with a compiled runtime and a classified call (plain values,
no CLI); tests/test_explain.py covers the same lines through ``explain``.
"""

from __future__ import annotations

from typing import Any

import pytest

from gate.config import Settings
from gate.core.classify import Transaction, classify, normalize, split_target
from gate.explain_decision import describe_decision, what_confirms, what_counts
from gate.runtime import Runtime, compile_settings
from tests.support import CUSTOMER, PARTNER_A

ORDERS = f"/v1/customers/{CUSTOMER}/orders"


def runtime(**policy: Any) -> Runtime:
    return compile_settings(Settings(policy=policy))


def new_order(compiled: Runtime) -> Transaction:
    transaction = classify(compiled.rules, "POST", normalize(split_target(ORDERS)[0]))
    assert transaction is not None
    return transaction


def labelled(lines: list[str]) -> dict[str, str]:
    """The lines by their label (``unaccepted:  ...`` -> ``{"unaccepted": "..."}``)."""
    return {label: value.strip() for label, _, value in (line.partition(":") for line in lines)}


BLOCKED = "blocked (403 CustomerAcceptanceRequired, not_accepted), not forwarded"


@pytest.mark.parametrize(
    ("policy", "unaccepted", "refusal"),
    [
        pytest.param({}, BLOCKED, True, id="enforce"),
        pytest.param({"mode": "observe"}, "would-block (observe_mode), forwarded", False,
                     id="observe"),
        pytest.param({"enforce_from": "2999-01-01T00:00:00Z"},
                     "would-block (before_enforcement), forwarded", False, id="before-the-date"),
    ],
)  # fmt: skip
def test_the_decision_for_both_pairs(
    policy: dict[str, Any], unaccepted: str, refusal: bool
) -> None:
    """R2/R3: an accepted pair is always forwarded; an unaccepted one as the mode and date say."""
    compiled = runtime(**policy)
    out = labelled(describe_decision(compiled, new_order(compiled), PARTNER_A, None))
    assert out["accepted"] == "allowed (accepted), forwarded"
    assert out["unaccepted"] == unaccepted
    assert ("refusal" in out) is refusal
    assert out["lookup"].endswith("(when the pair is not cached)")


def test_a_condition_says_when_an_unaccepted_call_is_blocked() -> None:
    """§1.1: a call gated only if its body changes something is blocked only then."""
    compiled = runtime()
    lines = describe_decision(compiled, new_order(compiled), PARTNER_A, "the quantity differs")
    assert labelled(lines)["unaccepted"] == f"if the quantity differs: {BLOCKED}; else not gated"


def test_a_partner_whose_mode_is_off_is_exempt_in_one_line() -> None:
    """R7: a partner override with mode off exempts its calls: nothing else to explain."""
    compiled = runtime(partners={PARTNER_A: {"mode": "off"}})
    transaction = new_order(compiled)
    assert describe_decision(compiled, transaction, PARTNER_A, None) == [
        "decision:    exempt (policy_off)"
    ]
    unnamed = labelled(describe_decision(compiled, transaction, None, None))
    assert unnamed["note"] == "1 partner override(s) exist: pass --partner to apply one"


def test_what_counts_names_the_types_and_the_date() -> None:
    """R4: the types and the date that count, by their policy keys; a confirmation's rule too."""
    plain = what_counts(runtime())
    assert plain == (
        "counts:      an agreement of type MicrosoftCloudAgreement or "
        "MicrosoftCustomerAgreement, any date"
    )
    dated = what_counts(runtime(accepted_since="2023-04-01T00:00:00Z"), confirmation=True)
    assert "dated 2023-04-01T00:00:00Z or later (policy.accepted_since)" in dated
    assert dated.endswith(
        "; one naming an attestationId is a MicrosoftCustomerAgreement dated the day it is made"
    )


@pytest.mark.parametrize(
    ("doc", "attested", "policy", "says"),
    [
        pytest.param({"type": "MicrosoftCloudAgreement"}, False, {},
                     "a MicrosoftCloudAgreement (in policy.agreement_types), its dateAgreed "
                     "(any date counts)", id="typed"),
        pytest.param({}, False, {"agreement_types": ["MicrosoftCustomerAgreement"]},
                     "a MicrosoftCloudAgreement (not in policy.agreement_types), its dateAgreed "
                     "(any date counts)", id="untyped-is-cloud"),
        pytest.param({"attestationId": "a"}, True, {"accepted_since": "2023-04-01T00:00:00Z"},
                     "a MicrosoftCustomerAgreement (in policy.agreement_types), dated the day it "
                     "is made, counted on or after 2023-04-01T00:00:00Z (accepted_since)",
                     id="attested"),
    ],
)  # fmt: skip
def test_what_a_confirmation_confirms(
    doc: dict[str, Any], attested: bool, policy: dict[str, Any], says: str
) -> None:
    """R5/R6: what a valid confirmation confirms, against agreement_types and accepted_since."""
    assert what_confirms(runtime(**policy), doc, attested) == says
