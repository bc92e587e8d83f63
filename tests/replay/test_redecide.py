"""gate.replay.redecide: one logged call re-decided under a config, step by step as the gate."""

from __future__ import annotations

from typing import Any

import pytest

from gate.config import Settings
from gate.replay.logline import LoggedCall, read_line
from gate.replay.redecide import NEEDS_LOOKUP, NOT_GATED, PASS, as_logged, redecide
from gate.runtime import compile_settings
from tests.replay.logs import SUBSCRIPTION, line
from tests.support import PARTNER_A, PARTNER_B

OFF_FOR_A = {"policy": {"partners": {PARTNER_A: {"mode": "off"}}}}
SUB = {"method": "PATCH", "path": SUBSCRIPTION, "transaction": "seat_change",
       "rule": "subscription-edit"}  # fmt: skip
EXEMPT = {"decision": "exempt", "reason": "policy_off", "acceptance": None, "cache": "none"}


def call(**changes: Any) -> LoggedCall:
    found = read_line(line(**changes))
    assert isinstance(found, LoggedCall)
    return found


def decide(logged: LoggedCall, compared: bool = True, **config: Any) -> tuple[str, str]:
    outcome = redecide(logged, compile_settings(Settings(**config)), compared=compared)
    return outcome.decision, outcome.reason


@pytest.mark.parametrize(
    ("logged", "config", "expected"),
    [
        pytest.param({}, {}, ("blocked", "not_accepted"), id="same-config"),
        pytest.param({}, {"policy": {"mode": "observe"}}, ("would-block", "observe_mode"),
                     id="observe"),
        pytest.param({}, {"policy": {"enforce_from": "2024-06-01T12:00:01Z"}},
                     ("would-block", "before_enforcement"), id="logged-time-before-date"),
        pytest.param({}, {"policy": {"enforce_from": "2024-06-01T11:59:59Z"}},
                     ("blocked", "not_accepted"), id="logged-time-after-date"),
        pytest.param({}, {"policy": {"enforce_percent": 0}}, ("would-block", "rollout_observed"),
                     id="rollout-zero"),
        pytest.param({}, OFF_FOR_A, ("exempt", "policy_off"), id="partner-off"),
        pytest.param({}, {"upstream": {"cloud": "china"}}, ("exempt", "national_cloud"),
                     id="national-cloud"),
        pytest.param({"partner": PARTNER_B}, OFF_FOR_A, ("blocked", "not_accepted"),
                     id="other-partner-off"),
        pytest.param({"acceptance": "accepted", "decision": "allowed", "reason": "accepted"},
                     {"policy": {"mode": "observe"}}, ("allowed", "accepted"), id="accepted"),
        pytest.param({"acceptance": "unknown", "reason": "lookup_error"},
                     {"acceptance": {"on_lookup_error": "allow"}},
                     ("would-block", "lookup_error"), id="lookup-error-fail-open"),
        pytest.param({"acceptance": "denied", "reason": "upstream_denied"},
                     {"policy": {"mode": "observe"}}, ("would-block", "observe_mode"),
                     id="denied-observed"),
        pytest.param({"acceptance": "denied", "reason": "upstream_denied"}, {},
                     ("blocked", "upstream_denied"), id="denied-enforced"),
        pytest.param({"acceptance": "accepted", "decision": "blocked", "reason": "client_gone"},
                     {}, ("blocked", "client_gone"), id="client-gone-stays"),
    ],
)  # fmt: skip
def test_policy_is_re_evaluated(
    logged: dict[str, Any], config: dict[str, Any], expected: tuple[str, str]
) -> None:
    """§3/R7/R8: mode, date (the logged time), rollout and overrides come from the new config."""
    assert decide(call(**logged), **config) == expected


@pytest.mark.parametrize(
    ("logged", "config", "expected"),
    [
        pytest.param(EXEMPT, {}, (NEEDS_LOOKUP, "body"), id="exempt-now-enforced"),
        pytest.param(EXEMPT, OFF_FOR_A, ("exempt", "policy_off"), id="exempt-stays-exempt"),
        pytest.param({**EXEMPT, "partner": None, "reason": "national_cloud"},
                     {"policy": {"mode": "off"}}, ("exempt", "policy_off"), id="blanket"),
        pytest.param({"event": "not_gated", "decision": None, "body": "cancel_only",
                      "method": "PATCH", "rule": "add-order-line-items",
                      "path": "/v1/customers/c/orders/o", "acceptance": None},
                     {}, (NOT_GATED, ""), id="cancel-only"),
        pytest.param({**SUB, "event": "not_gated", "decision": None, "body": "no_quantity",
                      "acceptance": None}, {"policy": {"subscription_edits": "all"}},
                     (NEEDS_LOOKUP, "acceptance"), id="no-quantity-under-all"),
        pytest.param({**SUB, "event": "not_gated", "decision": None, "body": "same_quantity"},
                     {"policy": {"subscription_edits": "all"}},
                     ("blocked", "not_accepted"), id="same-quantity-under-all"),
        pytest.param({**SUB, "body": "quantity"}, {}, ("blocked", "not_accepted"),
                     id="other-quantity"),
        pytest.param({"reason": "AmbiguousBody", "acceptance": None}, OFF_FOR_A,
                     ("exempt", "policy_off"), id="ambiguous-body-partner-off"),
        pytest.param({"reason": "AmbiguousBody", "acceptance": None},
                     {"policy": {"mode": "observe"}}, ("blocked", "AmbiguousBody"),
                     id="ambiguous-body-stays"),
        pytest.param({"reason": "AmbiguousBody", "acceptance": None, "partner": None},
                     OFF_FOR_A, ("blocked", "AmbiguousBody"), id="read-refusal-stays"),
        pytest.param({"reason": "BodyTooLarge", "acceptance": None, "partner": None},
                     {"policy": {"mode": "off"}}, ("exempt", "policy_off"),
                     id="too-large-exempt-when-off"),
        pytest.param({"reason": "PartnerUnknown", "acceptance": None, "partner": None},
                     {"policy": {"mode": "observe"}}, ("blocked", "PartnerUnknown"),
                     id="partner-unknown-stays"),
    ],
)  # fmt: skip
def test_what_the_log_holds_decides_or_the_call_stays_open(
    logged: dict[str, Any], config: dict[str, Any], expected: tuple[str, str]
) -> None:
    """§4: refusals stay unless exempted; facts the log lacks give needs-lookup, never a guess."""
    assert decide(call(**logged), **config) == expected


def test_an_uncompared_seat_change_stays_open() -> None:
    """§1.1: a log that never compared quantities (subscription_edits all) cannot say 'differs'."""
    seat_change = call(**SUB, body="quantity")
    assert decide(seat_change, compared=False) == (NEEDS_LOOKUP, "quantity")
    accepted = call(**SUB, body="quantity", acceptance="accepted")
    assert decide(accepted, compared=False) == ("allowed", "accepted")


def _rules(**when: str) -> dict[str, Any]:
    rules = [rule.model_dump() for rule in Settings().rules if rule.name != "create-order"]
    return {"rules": [{**rule, "when": when.get(rule["name"], rule["when"])} for rule in rules]}


def test_rules_are_re_evaluated() -> None:
    """§3 rules: a removed rule passes; a rule whose `when` needs facts the log lacks stays open."""
    assert decide(call()) == ("blocked", "not_accepted")
    assert decide(call(), **_rules()) == (PASS, "")
    edit = call(method="PATCH", path="/v1/customers/c/orders/o", rule="add-order-line-items")
    assert decide(edit, **_rules()) == (NEEDS_LOOKUP, "body")


def test_confirmations_keep_their_r6_result() -> None:
    """R6/R5: a confirmation is re-decided from its logged check; mode off does not exempt it."""
    path = "/v1/customers/c/agreements"
    valid = call(path=path, transaction="confirmation", rule="confirm-acceptance",
                 decision="allowed", reason="confirmation", acceptance=None)  # fmt: skip
    invalid = call(path=path, transaction="confirmation", rule="confirm-acceptance",
                   reason="InvalidAcceptance", acceptance=None)  # fmt: skip
    off = {"policy": {"mode": "off"}}
    assert decide(valid, **off) == ("allowed", "confirmation")
    assert decide(invalid, **off) == ("blocked", "InvalidAcceptance")
    assert decide(valid, upstream={"cloud": "usgov"}) == ("exempt", "national_cloud")


def test_as_logged() -> None:
    """§4: the old side, without --against, is the logged decision; not_gated has none."""
    assert as_logged(call()).decision == "blocked"
    assert as_logged(call(event="not_gated", decision=None)).decision == NOT_GATED


EDITS_2026 = {"policy": {"subscription_edits": ["quantity", "termDuration", "billingCycle"]}}


@pytest.mark.parametrize(
    ("logged", "config", "expected"),
    [
        pytest.param({**SUB, "transaction": "term_change", "body": "fields:termDuration"},
                     EDITS_2026, ("blocked", "not_accepted", "term_change"),
                     id="term-change-kept"),
        pytest.param({**SUB, "transaction": "term_change", "body": "fields:termDuration"},
                     {}, (NOT_GATED, "", "seat_change"), id="term-change-under-defaults"),
        pytest.param({**SUB, "body": "fields:billingCycle"},
                     {"policy": {"subscription_edits": ["quantity"]}},
                     (NOT_GATED, "", "seat_change"), id="field-not-listed"),
        pytest.param({**SUB, "body": "no_quantity"}, EDITS_2026,
                     (NEEDS_LOOKUP, "body", "seat_change"), id="old-line-lacks-fields"),
    ],
)  # fmt: skip
def test_subscription_edit_fields(
    logged: dict[str, Any], config: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    """§1.2 and §4: replay knows term_change and re-reads logged edit fields under a new list."""
    outcome = redecide(call(**logged), compile_settings(Settings(**config)))
    assert (outcome.decision, outcome.reason, outcome.transaction) == expected
