"""``gate explain``, its second half: what the policy decides, and what would confirm the pair.

``gate.explain`` works out what the call is (its rule, its body, the edit it
makes); this module says what then happens to it, offline: the policy's
decision for an accepted and for an unaccepted pair (the mode, the
enforcement date, the rollout bucket), how acceptance is found (the lookup,
what counts under R4, the sources) and the reasons a refusal can give. Lines
name policy keys and ids, never a body's values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gate.acceptance.lookup import DIRECT_PATH
from gate.config import MCA_TYPE
from gate.core.classify import Transaction
from gate.core.policy import Decision, Policy, State, Verdict
from gate.runtime import Runtime

__all__ = ["describe_decision", "what_confirms", "what_counts"]

_ANY = "(any partner)"


def describe_decision(
    runtime: Runtime, transaction: Transaction, who: str | None, condition: str | None
) -> list[str]:
    """The policy's decision for both pairs; ``condition``: when an unaccepted call is gated."""
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
        *_acceptance(runtime),
        f"accepted:    {_verdict(policy.decide(name, transaction.customer, State.ACCEPTED, now))}",
    ]
    if bucket_unknown:
        lines.append("unaccepted:  blocked (403) or would-block (rollout_observed): pass --partner")
    elif condition and unaccepted.verdict is Verdict.BLOCKED:
        lines.append(f"unaccepted:  if {condition}: {_verdict(unaccepted)}; else not gated")
    else:
        lines.append(f"unaccepted:  {_verdict(unaccepted)}")
    if bucket_unknown or unaccepted.verdict is Verdict.BLOCKED:
        lines.append(_reasons(runtime))
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


def _acceptance(runtime: Runtime) -> list[str]:
    """How acceptance is found for a gated call: the lookup, what counts, the sources."""
    rules, policy = runtime.lookup_rules, runtime.settings.policy
    lookup = f"GET .../agreements?agreementType={rules.query}"
    if rules.direct:
        lookup += f", then GET .../{DIRECT_PATH} when no agreement counts"
        direct = "direct (the customer accepted in the Microsoft 365 admin center)"
    elif not policy.direct_acceptance:
        direct = "direct off (policy.direct_acceptance = false)"
    else:
        direct = f"direct not asked ({MCA_TYPE} is not in policy.agreement_types)"
    return [
        f"lookup:      {lookup} (when the pair is not cached)",
        what_counts(runtime),
        f"sources:     agreement (a listed agreement that counts), {direct}, "
        "confirmation (a confirmation through the gate that counts); the log and admin "
        "inspect name it as source",
    ]


def what_counts(runtime: Runtime, confirmation: bool = False) -> str:
    """What confirms a pair under R4: the types and date that count (policy keys named)."""
    policy = runtime.settings.policy
    since = policy.accepted_since
    dated = f"dated {_rfc3339(since)} or later (policy.accepted_since)" if since else "any date"
    line = f"counts:      an agreement of type {' or '.join(policy.agreement_types)}, {dated}"
    if confirmation:
        return f"{line}; one naming an attestationId is a {MCA_TYPE} dated the day it is made"
    return line


def what_confirms(runtime: Runtime, doc: Any, attested: bool) -> str:
    """What a valid confirmation confirms, against policy.agreement_types and accepted_since."""
    policy = runtime.settings.policy
    kind = MCA_TYPE if attested else str(doc.get("type") or "MicrosoftCloudAgreement")
    dated = "dated the day it is made" if attested else "its dateAgreed"
    counted = kind.lower() in runtime.lookup_rules.types
    what = f"a {kind} ({'in' if counted else 'not in'} policy.agreement_types), {dated}"
    if policy.accepted_since is None:
        return f"{what} (any date counts)"
    return f"{what}, counted on or after {_rfc3339(policy.accepted_since)} (accepted_since)"


def _reasons(runtime: Runtime) -> str:
    """The refusal's reasons this policy can give, and its ways out."""
    reasons = ["no_agreement"]
    if len(runtime.lookup_rules.types) == 1:
        reasons.append("type_not_counted")
    if runtime.lookup_rules.accepted_since is not None:
        reasons.append("before_accepted_since")
    return (
        f"refusal:     403 13605 names why ({', '.join(reasons)}) and both ways out: the "
        "partner's confirmation (attestation flow or POST .../agreements) or the customer's "
        "acceptance in the Microsoft 365 admin center"
    )


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
