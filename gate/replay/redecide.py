"""Re-decide one logged gated call under another compiled config, as a live gate would.

This walks the steps of the gated-call flow (``gate/core/decide.py``) in their
order, using what the log line recorded in place of what the live gate read
from the call, the body and the acceptance store:

1. classify the logged method and path under the new rules (none: ``pass``);
2. blanket exemption (national cloud, or mode off for everyone): ``exempt``,
   before any body check; a confirmation is exempt only on a national cloud;
3. the body is read: a call the logging gate forwarded unread (``exempt``)
   has no body facts, so unless the new policy exempts its partner too it is
   ``needs-lookup``; a refusal while reading (``BodyTooLarge``, an encoded
   body) stays a refusal;
4. the partner's own exemption (mode off), then the JSON check: an
   ``AmbiguousBody`` refusal stays one;
5. the rule's ``when`` against the logged body facts: a cancel-only order
   edit, or a subscription edit without a quantity under ``seat_changes``,
   is ``not-gated``; facts the log lacks for the new rule give ``needs-lookup``;
6. an unknown partner is refused (``PartnerUnknown``); a confirmation keeps
   its logged R6 result;
7. the policy decides with the logged acceptance state (none logged:
   ``needs-lookup``) at the logged time: mode, enforcement date, rollout
   share, per-partner overrides and ``on_lookup_error`` are the new config's.
   An unconfirmed seat change is compared with the current quantity: the log
   says ``same_quantity`` when the logging gate found it unchanged, and
   ``quantity`` when it differed, if that gate compared at all (it does not
   under ``subscription_edits = "all"``: see ``redecide``'s ``compared``).

Nothing here reads a clock, a file or the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from gate.core.classify import Transaction, classify
from gate.core.edits import FACTS_PREFIX
from gate.core.policy import Decision, State, Verdict
from gate.errors import GateError
from gate.replay.logline import LoggedCall
from gate.runtime import Runtime

__all__ = ["NEEDS_LOOKUP", "NOT_GATED", "PASS", "Outcome", "as_logged", "redecide"]

NOT_GATED = "not-gated"  # a rule matched, the body made the call ungated (logged as not_gated)
PASS = "pass"  # no rule matches: forwarded with no decision and no log line
NEEDS_LOOKUP = "needs-lookup"  # the log lacks what the policy needs; the reason says what

_READ_REFUSALS = frozenset({"BodyTooLarge", "RequestTimeout"})
_POLICY_REASONS = frozenset(
    {"accepted", "not_accepted", "lookup_error", "observe_mode", "before_enforcement",
     "rollout_observed", "confirmation", "upstream_denied", "client_gone"}
)  # fmt: skip
_LINE_ITEM_FACTS = {"cancel_only": True, "adds_line_items": False}
_EDIT_KINDS = frozenset({"seat_change", "term_change"})
_QUANTITY_FACTS = {"no_quantity": False, "quantity": True, "same_quantity": True}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens to a call: a verdict, not-gated, pass or needs-lookup, and why."""

    decision: str
    reason: str
    transaction: str | None = None


def as_logged(call: LoggedCall) -> Outcome:
    """The outcome the logging gate reached."""
    return Outcome(call.decision or NOT_GATED, call.reason, call.transaction)


def _verdict(decision: Decision, kind: str) -> Outcome:
    return Outcome(decision.verdict.value, decision.reason.value, kind)


def _refused(call: LoggedCall) -> bool:
    """A gate refusal of the call itself (not a policy verdict, not an upstream answer)."""
    return call.decision == "blocked" and call.reason not in _POLICY_REASONS


def redecide(call: LoggedCall, runtime: Runtime, *, compared: bool = True) -> Outcome:
    """The outcome the gate running ``runtime`` would reach for the logged call.

    ``compared``: the logging gate compared unconfirmed seat changes with the
    current quantity (``policy.subscription_edits = "seat_changes"``), so a
    logged ``quantity`` on such a line means it differed. With ``"all"`` it
    never compared, and a new config that compares gets ``needs-lookup``.
    """
    try:
        transaction = classify(runtime.rules, call.method, call.path)
    except GateError as error:  # refused before any rule applies, as the proxy would
        return Outcome(Verdict.BLOCKED.value, error.error_name)
    if transaction is None:
        return Outcome(PASS, "")
    kind, policy = transaction.kind, runtime.policy
    exemptable = kind != "confirmation" or policy.national_cloud
    exempt = policy.blanket_exemption() if exemptable else None
    if exempt is not None:
        return _verdict(exempt, kind)
    exempt = policy.exemption(call.partner) if call.partner and exemptable else None
    if call.decision == "exempt":  # forwarded unread: body facts, R6, acceptance all unknown
        return _verdict(exempt, kind) if exempt else Outcome(NEEDS_LOOKUP, "body", kind)
    if _refused(call) and call.reason in _READ_REFUSALS:
        return Outcome(Verdict.BLOCKED.value, call.reason, kind)
    if call.reason == "AmbiguousBody" and call.partner is None:  # read or parse, no override
        return Outcome(Verdict.BLOCKED.value, call.reason, kind)
    if exempt is not None:
        return _verdict(exempt, kind)
    if call.reason == "AmbiguousBody":
        return Outcome(Verdict.BLOCKED.value, call.reason, kind)
    return _after_body(call, runtime, transaction, compared)


def _after_body(
    call: LoggedCall, runtime: Runtime, transaction: Transaction, compared: bool
) -> Outcome:
    kind = transaction.kind
    gated = _gated_by_body(call, runtime, transaction)
    if gated is None:
        return Outcome(NEEDS_LOOKUP, "body", kind)
    if not gated:
        return Outcome(NOT_GATED, "", kind)
    if call.partner is None:
        return Outcome(Verdict.BLOCKED.value, "PartnerUnknown", kind)
    if kind == "confirmation":
        return _confirmation(call)
    return _policy(call, runtime, transaction, compared)


def _gated_by_body(call: LoggedCall, runtime: Runtime, transaction: Transaction) -> bool | None:
    """Whether the body keeps the call gated under the new rule; None: the log cannot tell."""
    if transaction.when == "adds_line_items":
        cancel_only = _LINE_ITEM_FACTS.get(call.facts or "")
        return None if cancel_only is None else not cancel_only
    if transaction.when == "changes_quantity" and runtime.edit_fields is not None:
        facts = call.facts or ""
        if facts.startswith(FACTS_PREFIX):  # a gate that listed fields logged every one named
            named = set(facts.removeprefix(FACTS_PREFIX).split("+")) - {""}
            return bool(named & set(runtime.edit_fields))
        if runtime.edit_fields == ("quantity",):
            return _QUANTITY_FACTS.get(facts)
        return True if facts == "quantity" else None  # other fields were not logged
    return True


def _confirmation(call: LoggedCall) -> Outcome:
    if call.transaction == "confirmation" and call.reason in ("confirmation", "InvalidAcceptance"):
        verdict = "allowed" if call.reason == "confirmation" else Verdict.BLOCKED.value
        return Outcome(verdict, call.reason, "confirmation")
    return Outcome(NEEDS_LOOKUP, "body", "confirmation")  # R6 was never checked


def _policy(
    call: LoggedCall, runtime: Runtime, transaction: Transaction, compared: bool
) -> Outcome:
    kind, policy = transaction.kind, runtime.policy
    if transaction.when == "changes_quantity" and call.transaction in _EDIT_KINDS:
        kind = call.transaction  # what the edit turned out to be: a seat or a term change
    partner, customer = call.partner or "", transaction.customer
    if call.acceptance is None:
        return Outcome(NEEDS_LOOKUP, "acceptance", kind)
    if call.acceptance == "denied":  # the upstream refused the caller's own credentials
        decision = policy.decide(partner, customer, State.NOT_ACCEPTED, call.at)
        if decision.verdict is not Verdict.BLOCKED:
            return _verdict(decision, kind)
        return Outcome(Verdict.BLOCKED.value, "upstream_denied", kind)
    state = State(call.acceptance)
    # An unconfirmed seat change is compared with the current quantity. A logging gate
    # that compared too says same_quantity when it was unchanged, quantity when not.
    compares = transaction.when == "changes_quantity" and runtime.seat_changes_only
    if compares and state is not State.ACCEPTED:
        if (call.facts or "").startswith("same_"):  # same_quantity, same_fields:...
            return Outcome(NOT_GATED, "", kind)
        if not compared:
            return Outcome(NEEDS_LOOKUP, "quantity", kind)
    decision = policy.decide(partner, customer, state, call.at)
    if decision.verdict is not Verdict.BLOCKED and call.reason == "client_gone":
        return Outcome(Verdict.BLOCKED.value, "client_gone", kind)
    return _verdict(decision, kind)
