"""``gate explain``: how one call would be classified and decided, offline.

It runs the same steps as a live gate, in the same order (classification,
exemptions, the body's JSON check and the rule's ``when``, R6 for a
confirmation, the policy), on a method, a path and, optionally, a body,
and says what each step found. Output names rules, fields and ids, never a
body's values. Offline there is no acceptance store and no subscription to
read, so the decision is shown for an accepted and for an unaccepted pair.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gate.config import Settings
from gate.core import body as bodies
from gate.core.classify import Transaction, classify, normalize, split_target
from gate.core.confirmation import problems
from gate.core.policy import Decision, Policy, State, Verdict
from gate.errors import GateError
from gate.runtime import Runtime, compile_settings

__all__ = ["explain"]

_ANY = "(any partner)"
_SEAT_CHANGE_IF = (
    "a seat change if the quantity differs from the current one; "
    "with an unconfirmed pair the gate reads the subscription to compare"
)


def explain(
    settings: Settings, method: str, target: str, partner: str | None, body: bytes | None
) -> list[str]:
    """The lines ``gate explain`` prints for one call."""
    runtime = compile_settings(settings)
    method = method.upper()
    try:
        path = normalize(split_target(target)[0])
        transaction = classify(runtime.rules, method, path)
    except GateError as error:
        return [_refusal(error)]
    lines = [f"call:        {method} {path}"]
    if transaction is None:
        return [*lines, "gated:       no (pass-through: forwarded untouched, no acceptance lookup)"]
    lines += [
        f"rule:        {transaction.rule}",
        f"transaction: {transaction.kind}",
        f"customer:    {transaction.customer}",
    ]
    who = partner.lower() if partner else None
    if body is None:
        return lines + _without_body(runtime, transaction, who)
    return lines + _with_body(runtime, transaction, who, body)


def _refusal(error: GateError) -> str:
    return f"refused: {error.status} {error.error_name}: {error.description}"


def _without_body(runtime: Runtime, transaction: Transaction, who: str | None) -> list[str]:
    if transaction.kind == "confirmation":
        return ["gated:       confirmation (payload checked, forwarded, marks the pair accepted)"]
    when = {
        "always": "always",
        "adds_line_items": "unless the body only cancels (status cancelled, no line items)",
        "changes_quantity": "when the body's quantity differs from the current one"
        if runtime.seat_changes_only
        else "always (policy.subscription_edits = all)",
    }[transaction.when]
    return [f"gated:       yes, {when}", *_decision(runtime, transaction, who, seat_check=False)]


def _with_body(
    runtime: Runtime, transaction: Transaction, who: str | None, raw: bytes
) -> list[str]:
    policy = runtime.policy
    exemptable = transaction.kind != "confirmation" or policy.national_cloud
    exempt = policy.blanket_exemption() if exemptable else None
    if exempt is None and who is not None and exemptable:
        exempt = policy.exemption(who)
    if exempt is not None:
        return [
            "body:        not read: an exempt call is forwarded as sent, with no body checks",
            f"decision:    exempt ({exempt.reason.value})",
        ]
    try:
        doc = bodies.parse(raw)
    except GateError as error:
        return [f"body:        {_refusal(error)}", "decision:    blocked, not forwarded"]
    if transaction.kind == "confirmation":
        return _confirmation(doc)
    gated, facts = _body_rule(runtime, transaction, doc)
    lines = [f"body:        {facts}"]
    resellers = bodies.resellers(doc)
    if resellers:
        lines.append(f"resellers:   {', '.join(resellers)} (checked against the caller)")
    if not gated:
        return [*lines, "gated:       no (forwarded untouched, no acceptance lookup)"]
    seat_check = transaction.when == "changes_quantity" and runtime.seat_changes_only
    gate_line = _SEAT_CHANGE_IF if seat_check else "yes"
    return [*lines, f"gated:       {gate_line}", *_decision(runtime, transaction, who, seat_check)]


def _body_rule(runtime: Runtime, transaction: Transaction, doc: Any) -> tuple[bool, str]:
    """Whether the body keeps the call gated, and what it showed."""
    json_note = "" if doc is not bodies.NOT_JSON else " (not JSON)"
    if transaction.when == "adds_line_items":
        if bodies.is_cancel_only(doc):
            return False, "only cancels (status cancelled, no line items): not a purchase"
        return True, f"adds line items or changes more than the status{json_note}"
    if transaction.when == "changes_quantity":
        quantity = bodies.requested_quantity(doc)
        if quantity is None:
            facts = "names no quantity (suspend, reactivate, nickname, auto-renew)"
            return not runtime.seat_changes_only, facts
        if isinstance(quantity, int):
            return True, f"asks for quantity {quantity}"
        return True, f"has a quantity the gate cannot read as a number{json_note}"
    return True, f"checked for repeated keys only (rule when = always){json_note}"


def _confirmation(doc: Any) -> list[str]:
    found = problems(doc, datetime.now(UTC))
    if not found:
        return [
            "body:        R6 check passed",
            "decision:    allowed (confirmation): forwarded; a 2xx marks the pair accepted",
        ]
    return [
        f"body:        R6 check failed: {len(found)} problem(s)",
        *(f"problem:     {p['field']}: {p['message']}" for p in found),
        "decision:    blocked (400 InvalidAcceptance), not forwarded",
    ]


def _decision(
    runtime: Runtime, transaction: Transaction, who: str | None, seat_check: bool
) -> list[str]:
    policy, settings = runtime.policy, runtime.settings.policy
    name = who or _ANY
    exempt = policy.exemption(name)
    if exempt is not None:
        return [f"decision:    exempt ({exempt.reason.value})"]
    now = datetime.now(UTC).timestamp()
    unaccepted = policy.decide(name, transaction.customer, State.NOT_ACCEPTED, now)
    percent, mode = settings.enforce_percent, policy.mode_for(name)
    bucket_unknown = who is None and 0 < percent < 100 and mode == "enforce"
    outcome = (
        "depends on the (partner, customer) pair's rollout bucket: pass --partner"
        if bucket_unknown
        else "blocked (403) unless accepted"
        if unaccepted.verdict is Verdict.BLOCKED
        else f"{unaccepted.verdict.value} ({unaccepted.reason.value}), forwarded"
    )
    lines = [
        f"decision:    mode {mode} for {name}, enforced from "
        f"{settings.enforce_from.isoformat()}, {percent}% of customers: {outcome}",
        f"policy:      {_path(runtime, name, transaction.customer, who)}",
        f"accepted:    {_verdict(policy.decide(name, transaction.customer, State.ACCEPTED, now))}",
    ]
    if bucket_unknown:
        lines.append("unaccepted:  blocked (403) or would-block (rollout_observed): pass --partner")
    elif seat_check and unaccepted.verdict is Verdict.BLOCKED:
        lines.append(
            f"unaccepted:  if the quantity differs: {_verdict(unaccepted)}; else not gated"
        )
    else:
        lines.append(f"unaccepted:  {_verdict(unaccepted)}")
    if who is None and settings.partners:
        lines.append(f"note:        {len(settings.partners)} partner override(s) exist: "
                     "pass --partner to apply one")  # fmt: skip
    return lines


def _path(runtime: Runtime, name: str, customer: str, who: str | None) -> str:
    """The policy steps an unaccepted pair goes through, in the order the gate takes them."""
    policy, settings = runtime.policy, runtime.settings.policy
    mode = policy.mode_for(name)
    steps = [f"mode {mode} ({'partner override' if who in settings.partners else 'default'})"]
    if mode == "enforce":
        started = datetime.now(UTC) >= settings.enforce_from
        steps.append(f"enforcement date {'passed' if started else 'not reached'}")
        if started:
            steps.append(_bucket(policy, settings.enforce_percent, name, customer, who))
    return " -> ".join(steps)


def _bucket(policy: Policy, percent: int, name: str, customer: str, who: str | None) -> str:
    if percent >= 100:
        return "rollout 100%: every pair enforced"
    if percent <= 0:
        return "rollout 0%: every pair observed"
    if who is None:
        return f"rollout {percent}%: the pair's bucket decides (pass --partner)"
    enforced = policy.in_rollout(name, customer)
    return f"rollout {percent}%: this pair's bucket is {'enforced' if enforced else 'observed'}"


def _verdict(decision: Decision) -> str:
    if decision.verdict is Verdict.BLOCKED:
        return f"blocked (403 CustomerAcceptanceRequired, {decision.reason.value}), not forwarded"
    return f"{decision.verdict.value} ({decision.reason.value}), forwarded"
