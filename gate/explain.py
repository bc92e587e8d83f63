"""``gate explain``: how one call would be classified and decided, offline.

It runs the same steps as a live gate, in the same order (classification,
exemptions, the body's JSON check and the rule's ``when``, R6 for a
confirmation, the policy), on a method, a path and, optionally, a body,
and says what each step found. Output names rules, fields and ids, never a
body's values. Offline there is no acceptance store, so the decision is
shown for an accepted and for an unaccepted pair, with what would confirm
the pair (the lookup, what counts under R4, the sources: agreement, direct,
confirmation).

Subscription edits (DESIGN §1.2): the live gate compares the body with the
current subscription, which it reads only for an unconfirmed pair. Offline
there is none, so explain lists the edit fields the body names and says
which kind each makes *if it differs* (``scheduledNextTermInstructions``
counts whenever it is not null, as in the gate). Given the current
subscription (``current``: the JSON document GET returns, ``--current
FILE``), it compares as the gate does and names the kind; a current
document that is not a JSON object is treated as the gate treats an
unreadable subscription: every named field counts as changed.

This module says what the call is (its rule, its body, the edit it makes);
``gate.explain_decision`` says what the policy then does with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gate.config import Settings
from gate.core import body as bodies
from gate.core import edits
from gate.core.classify import Transaction, classify, normalize, split_target
from gate.core.confirmation import attestation_id, problems
from gate.core.record import counts
from gate.errors import GateError
from gate.explain_decision import describe_decision, what_confirms, what_counts
from gate.runtime import Runtime, compile_settings

__all__ = ["explain"]

_NEXT_TERM = "scheduledNextTermInstructions"
_SEAT_CHANGE_IF = (
    "a seat change if the quantity differs from the current one; "
    "with an unconfirmed pair the gate reads the subscription to compare"
)
_NOT_GATED = "no (forwarded untouched, no acceptance lookup)"


def explain(
    settings: Settings,
    method: str,
    target: str,
    partner: str | None,
    body: bytes | None,
    current: bytes | None = None,
) -> list[str]:
    """The lines ``gate explain`` prints for one call (``current``: the subscription now)."""
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
        f"transaction: {_kinds(runtime, transaction)}",
        f"customer:    {transaction.customer}",
    ]
    who = partner.lower() if partner else None
    if body is None:
        return lines + _without_body(runtime, transaction, who)
    return lines + _with_body(runtime, transaction, who, body, current)


def _refusal(error: GateError) -> str:
    return f"refused: {error.status} {error.error_name}: {error.description}"


def _term_fields(runtime: Runtime) -> list[str]:
    return [field for field in runtime.edit_fields or () if field != "quantity"]


def _kinds(runtime: Runtime, transaction: Transaction) -> str:
    """The kinds a subscription edit may turn out to be, before its body is known."""
    if transaction.when != "changes_quantity" or not _term_fields(runtime):
        return transaction.kind
    kinds = ["seat_change"] if "quantity" in (runtime.edit_fields or ()) else []
    return " or ".join([*kinds, "term_change"]) + " (by the fields the body changes)"


def _edit_when(runtime: Runtime) -> str:
    if runtime.edit_fields is None:
        return "always (policy.subscription_edits = all)"
    if runtime.edit_fields == ("quantity",):
        return "when the body's quantity differs from the current one"
    terms = [
        f"{field} set" if field == _NEXT_TERM else f"a changed {field}"
        for field in _term_fields(runtime)
    ]
    seat = "a changed quantity (seat_change), or " if "quantity" in runtime.edit_fields else ""
    listed = ", ".join(terms[:-1]) + " or " + terms[-1] if len(terms) > 1 else terms[0]
    return f"when the body has {seat}{listed} (term_change)"


def _without_body(runtime: Runtime, transaction: Transaction, who: str | None) -> list[str]:
    if transaction.kind == "confirmation":
        return [
            "gated:       confirmation (payload checked, forwarded, marks the pair accepted "
            "when what it confirms counts)",
            what_counts(runtime, confirmation=True),
        ]
    when = {
        "always": "always",
        "adds_line_items": "unless the body only cancels (status cancelled, no line items)",
        "changes_quantity": _edit_when(runtime),
    }[transaction.when]
    return [f"gated:       yes, {when}", *describe_decision(runtime, transaction, who, None)]


def _with_body(
    runtime: Runtime, transaction: Transaction, who: str | None, raw: bytes, current: bytes | None
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
        return _confirmation(runtime, doc)
    by_fields = runtime.edit_fields is not None and (
        current is not None or runtime.edit_fields != ("quantity",)
    )
    if transaction.when == "changes_quantity" and by_fields:
        return _edit(runtime, transaction, who, doc, current)
    gated, facts = _body_rule(runtime, transaction, doc)
    lines = [f"body:        {facts}"]
    resellers = bodies.resellers(doc)
    if resellers:
        lines.append(f"resellers:   {', '.join(resellers)} (checked against the caller)")
    if not gated:
        return [*lines, f"gated:       {_NOT_GATED}"]
    seat_check = transaction.when == "changes_quantity" and runtime.seat_changes_only
    gate_line = _SEAT_CHANGE_IF if seat_check else "yes"
    condition = "the quantity differs" if seat_check else None
    return [
        *lines,
        f"gated:       {gate_line}",
        *describe_decision(runtime, transaction, who, condition),
    ]


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


def _edit(
    runtime: Runtime, transaction: Transaction, who: str | None, doc: Any, current: bytes | None
) -> list[str]:
    """A subscription edit under a list of fields: which fields, which kind (DESIGN §1.2)."""
    fields = runtime.edit_fields or ()
    if doc is bodies.NOT_JSON:
        edit = transaction.with_kind("seat_change")
        return [
            "body:        not JSON: treated as a seat change (§1.1)",
            "gated:       yes",
            *describe_decision(runtime, edit, who, None),
        ]
    named = edits.named(doc, fields)
    if not named:
        return [f"body:        names none of {', '.join(fields)}", f"gated:       {_NOT_GATED}"]
    lines = [f"body:        names {', '.join(named)}"]
    if current is None:
        sure = _NEXT_TERM in named
        lines += [
            "current:     unknown offline (the gate reads it for an unconfirmed pair); "
            "--current FILE compares here",
            f"edit:        {_if_differs(named)}",
            "gated:       yes" if sure else "gated:       yes, if a named field differs",
        ]
        maybe = transaction.with_kind(edits.kind_of(named) or transaction.kind)
        condition = None if sure else "a named field differs"
        return lines + describe_decision(runtime, maybe, who, condition)
    changed = edits.changed(doc, _document(current), fields)
    same = [field for field in named if field not in changed]
    lines.append(
        f"current:     changes {', '.join(changed) or 'no gated field'}"
        + (f"; same {', '.join(same)}" if same else "")
    )
    kind = edits.kind_of(changed)
    if kind is None:
        return [
            *lines,
            "gated:       no: it changes no gated field (forwarded; a confirmed pair's call "
            "is logged allowed, an unconfirmed one's not_gated)",
        ]
    edit = transaction.with_kind(kind)
    return [
        *lines,
        f"edit:        {kind}",
        "gated:       yes",
        *describe_decision(runtime, edit, who, None),
    ]


def _document(raw: bytes) -> Any:
    """The current subscription as the gate would read it (an unreadable one: None)."""
    try:
        doc = bodies.parse(raw)
    except GateError:
        return None
    return doc if isinstance(doc, dict) else None


def _if_differs(named: tuple[str, ...]) -> str:
    """The kinds the named fields would make, offline (no current subscription)."""
    terms = [field for field in named if field != "quantity"]
    parts = ["seat_change if quantity differs from the current one"] if "quantity" in named else []
    if _NEXT_TERM in terms:
        return ", else ".join([*parts, f"term_change ({_NEXT_TERM} is set)"])
    if terms:
        parts.append(f"term_change if {' or '.join(terms)} differs")
    return ", else ".join([*parts, "not gated"])


def _confirmation(runtime: Runtime, doc: Any) -> list[str]:
    now = datetime.now(UTC)
    found = problems(doc, now)
    if found:
        return [
            f"body:        R6 check failed: {len(found)} problem(s)",
            *(f"problem:     {p['field']}: {p['message']}" for p in found),
            "decision:    blocked (400 InvalidAcceptance), not forwarded",
        ]
    attested = attestation_id(doc) is not None
    checked = (
        "R6 check passed (names an attestation: nothing else is checked; the upstream "
        "decides the rest)"
        if attested
        else "R6 check passed"
    )
    if counts(doc, runtime.lookup_rules, now):
        return [
            f"body:        {checked}",
            f"counts:      yes: {what_confirms(runtime, doc, attested)}",
            "decision:    allowed (confirmation): forwarded; a 2xx marks the pair accepted "
            "(source confirmation)",
        ]
    return [
        f"body:        {checked}",
        f"counts:      no: {what_confirms(runtime, doc, attested)}",
        "decision:    allowed (confirmation): forwarded, but a 2xx does not mark the pair "
        "accepted (what it confirms does not count under R4)",
    ]
