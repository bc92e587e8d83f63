"""gate.core.judge: a gated call's verdict from plain facts, as the live gate and replay ask it."""

from __future__ import annotations

from typing import Any

import pytest

from gate.config import Settings
from gate.core.judge import NEEDS_ACCEPTANCE, NEEDS_COMPARISON, Facts, Needs, exemptable, judge
from gate.core.policy import Decision, State
from gate.runtime import Runtime, compile_settings
from tests.support import CUSTOMER, PARTNER_A, PARTNER_B

AFTER = 1_800_000_000.0  # 2027: after the default enforcement date (2018-11-07)
BEFORE = 1_500_000_000.0  # 2017: before it


def runtime(**config: Any) -> Runtime:
    return compile_settings(Settings(**config))


def facts(**changes: Any) -> Facts:
    known: dict[str, Any] = {
        "partner": PARTNER_A,
        "customer": CUSTOMER,
        "when": "adds_line_items",
        "at": AFTER,
        "acceptance": State.NOT_ACCEPTED,
    }
    return Facts(**{**known, **changes})


def said(judged: Decision | Needs | None) -> tuple[str, str] | str | None:
    """A verdict as (verdict, reason); a fact needed as its name; None: not gated."""
    if isinstance(judged, Needs):
        return judged.fact
    if judged is None:
        return None
    return judged.verdict.value, judged.reason.value


@pytest.mark.parametrize(
    ("changes", "config", "expected"),
    [
        pytest.param({}, {}, ("blocked", "not_accepted"), id="not-accepted-enforced"),
        pytest.param({"acceptance": State.ACCEPTED}, {}, ("allowed", "accepted"), id="accepted"),
        pytest.param({"acceptance": None}, {}, "acceptance", id="nothing-asked-yet"),
        pytest.param({"acceptance": State.UNKNOWN}, {}, ("blocked", "lookup_error"),
                     id="lookup-error-fail-closed"),
        pytest.param({"acceptance": State.UNKNOWN}, {"acceptance": {"on_lookup_error": "allow"}},
                     ("would-block", "lookup_error"), id="lookup-error-fail-open"),
        pytest.param({}, {"policy": {"mode": "observe"}}, ("would-block", "observe_mode"),
                     id="observe"),
        pytest.param({"at": BEFORE}, {}, ("would-block", "before_enforcement"),
                     id="before-enforcement"),
        pytest.param({}, {"policy": {"enforce_percent": 0}}, ("would-block", "rollout_observed"),
                     id="rollout-zero"),
        pytest.param({}, {"policy": {"partners": {PARTNER_A: {"mode": "off"}}}},
                     ("exempt", "policy_off"), id="partner-off"),
        pytest.param({"partner": PARTNER_B}, {"policy": {"partners": {PARTNER_A: {"mode": "off"}}}},
                     ("blocked", "not_accepted"), id="other-partner-off"),
        pytest.param({"denied": True, "acceptance": None}, {}, ("blocked", "upstream_denied"),
                     id="denied-enforced"),
        pytest.param({"denied": True, "acceptance": None}, {"policy": {"mode": "observe"}},
                     ("would-block", "observe_mode"), id="denied-observed"),
    ],
)  # fmt: skip
def test_judge_turns_facts_into_a_verdict(
    changes: dict[str, Any], config: dict[str, Any], expected: object
) -> None:
    """R1/R3/R7: mode, enforcement date, rollout and overrides over the acceptance state."""
    assert said(judge(facts(**changes), runtime(**config))) == expected


@pytest.mark.parametrize(
    ("changes", "edits", "expected"),
    [
        pytest.param({}, "seat_changes", "quantity", id="unconfirmed-edit-not-compared-yet"),
        pytest.param({"same": True}, "seat_changes", None, id="same-quantity-not-gated"),
        pytest.param({"same": False}, "seat_changes", ("blocked", "not_accepted"),
                     id="changed-quantity"),
        pytest.param({"acceptance": State.ACCEPTED}, "seat_changes", ("allowed", "accepted"),
                     id="accepted-never-compared"),
        pytest.param({}, "all", ("blocked", "not_accepted"), id="all-edits-never-compared"),
        pytest.param({"denied": True}, "seat_changes", ("blocked", "upstream_denied"),
                     id="denied-never-compared"),
    ],
)  # fmt: skip
def test_an_unconfirmed_subscription_edit_is_compared_first(
    changes: dict[str, Any], edits: str, expected: object
) -> None:
    """R2: under seat_changes an unconfirmed edit is gated only if it changes the seat count."""
    config = runtime(policy={"subscription_edits": edits})
    assert said(judge(facts(when="changes_quantity", **changes), config)) == expected


def test_the_facts_needed_are_named() -> None:
    """A missing fact is named, so a replay can say which lookup it would take."""
    assert NEEDS_ACCEPTANCE.fact == "acceptance"
    assert NEEDS_COMPARISON.fact == "quantity"


@pytest.mark.parametrize(
    ("kind", "cloud", "expected"),
    [
        pytest.param("new_order", "public", True, id="order"),
        pytest.param("confirmation", "public", False, id="confirmation-checked-under-off"),
        pytest.param("confirmation", "china", True, id="confirmation-national-cloud"),
    ],
)
def test_exemptions_apply_except_to_a_confirmation(kind: str, cloud: str, expected: bool) -> None:
    """R5/R6: a confirmation is checked even with the policy off, except on a national cloud."""
    assert exemptable(runtime(upstream={"cloud": cloud}), kind) is expected
