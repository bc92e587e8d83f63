"""The decision core: classify -> identify -> decide, answering with an Action value.

Two steps, because a gated call's body must be read in between and reading
belongs to the front door: ``route`` (synchronous) classifies a request
head and returns an Action for everything it can settle alone, or a
``Gated`` value; ``decide`` then reads the body's meaning, identifies the
partner, asks the acceptance store and returns the Action. Pass-through
calls (most traffic) leave ``route`` as a Forward with no lookup and no log.
Neither step sees a socket, so the proxy and the decision service share them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from gate.config import EDIT_FIELDS
from gate.core import body, edits
from gate.core.action import Action, Answer, Forward, Gated, Head, answer_error
from gate.core.classify import METHOD_OVERRIDE_HEADERS, classify, normalize, split_target
from gate.core.confirmation import attestation_id
from gate.core.identity import Caller, partner_from_header, partner_from_token
from gate.core.judge import NEEDS_ACCEPTANCE, Facts, Needs, exemptable, judge
from gate.core.policy import Decision, Reason, Verdict
from gate.core.record import check, counts
from gate.core.refusal import refusal
from gate.core.trace import Trace
from gate.errors import AmbiguousBody, AmbiguousMethod, GateError, PartnerUnknown
from gate.runtime import Runtime, RuntimeHolder
from gate.tasks import Step

if TYPE_CHECKING:  # the store's answer; the core needs only the shape below
    from gate.acceptance.lookup import LookupRules
    from gate.acceptance.store import Outcome

__all__ = ["Acceptance", "Decider", "Pending", "ReadSubscription"]

_OVERRIDES = tuple(name.lower() for name in METHOD_OVERRIDE_HEADERS)
_TOKENS_CACHED = 4096  # distinct Authorization values whose partner is remembered
ReadSubscription = Callable[[str, str], Awaitable[Any]]
"""(path, authorization) -> the current subscription document, or None when unreadable."""


class Acceptance(Protocol):
    """What the core asks of the acceptance store (``gate.acceptance.AcceptanceStore``)."""

    def peek(self, partner: str, customer: str) -> Outcome | None:
        """A fresh cached answer, without awaiting anything."""
        ...

    async def lookup(
        self,
        partner: str,
        customer: str,
        authorization: str,
        correlation: str | None,
        rules: LookupRules,
    ) -> Outcome:
        """The answer, looked up (or shared with a lookup already under way)."""
        ...


class Pending:
    """A gated call identified and checked, waiting on the acceptance store (or a seat count).

    Filled in as the facts arrive (a plain class, native when compiled: one per gated call).
    """

    __slots__ = ("authorization", "caller", "compared", "doc", "gated", "kind", "outcome", "raw")

    def __init__(
        self, gated: Gated, caller: Caller, doc: Any, raw: bytes, authorization: str
    ) -> None:
        self.gated = gated
        self.caller = caller
        self.doc = doc
        self.raw = raw
        self.authorization = authorization
        self.outcome: Outcome | None = None
        self.kind: str | None = None  # what a compared edit turned out to be; None: no change
        self.compared = False  # compared with the current subscription


def _known(pending: Pending) -> Facts:
    """The facts the judge reads, from what the live gate gathered so far."""
    caller, outcome = pending.caller, pending.outcome
    return Facts(
        caller.partner,
        caller.customer,
        pending.gated.transaction.when,
        time.time(),
        None if outcome is None else outcome.state,
        outcome is not None and outcome.denied is not None,
        (pending.kind is None) if pending.compared else None,
    )


class Decider:
    """One per process: the compiled config, the acceptance store, the subscription reader."""

    def __init__(
        self, holder: RuntimeHolder, store: Acceptance, read_subscription: ReadSubscription
    ) -> None:
        self._holder = holder
        self._store = store
        self._read_subscription = read_subscription
        # A commerce system sends the same token for an hour: decode each one once.
        self._partner_of_token = functools.lru_cache(maxsize=_TOKENS_CACHED)(_token_partner)

    def route(self, method: str, target: str, head: Head) -> Action | Gated:
        """Classify a request head; a Forward for pass-through, Gated when the body decides."""
        runtime = self._holder.current
        try:
            path, query = split_target(target)
            path = normalize(path)
            codings = head.getall("transfer-encoding")
            if codings:
                _check_transfer_coding(codings)
            overrides = [
                (name, value) for name in _OVERRIDES for value in head.getall(name)
            ]  # usually none: three dict lookups
            transaction = classify(runtime.rules, method, path, overrides)
        except AmbiguousMethod as error:  # raised only on gated paths: a refusal of a gated call
            error.headers.setdefault("X-Gate-Decision", Verdict.BLOCKED)
            return answer_error(error)
        except GateError as error:
            return answer_error(error)
        target = runtime.upstream_prefix + path + query
        if transaction is None:
            return Forward(target)
        correlation = head.getall("ms-correlationid")
        trace = Trace(
            transaction, method, path, correlation[0] if correlation else None, time.perf_counter()
        )
        # Exemption lifts gating; a confirmation is not gated, so R6/R5 still apply to it,
        # except on a national cloud, which does not support confirmation at all.
        may_exempt = exemptable(runtime, transaction.kind)
        exempt = runtime.policy.blanket_exemption() if may_exempt else None
        if exempt is not None:  # R8 / mode off: forwarded as sent, nothing read or checked
            trace.verdict, trace.reason = exempt.verdict, exempt.reason
            return Forward(target, decision=Verdict.EXEMPT, trace=trace)
        encodings = {value.strip().lower() for value in head.getall("content-encoding")}
        if encodings - {"", "identity"}:
            return answer_error(
                AmbiguousBody(
                    "The gate cannot inspect an encoded body on a gated call; send it unencoded.",
                    [{"header": "Content-Encoding"}],
                ),
                trace,
            )
        return Gated(runtime, transaction, target, trace, may_exempt)

    def decide(self, gated: Gated, head: Head, raw: bytes) -> Step[Action]:
        """The Action for a gated call whose whole body is ``raw``: now, or a coroutine.

        Now when nothing needs awaiting (a cache hit, an exemption, a refusal);
        a coroutine when the pair is not cached, or an unconfirmed subscription
        edit must be compared with the current quantity (``gate.tasks.then``
        carries on with either).
        """
        try:
            step = self._identify(gated, head, raw)
            if not isinstance(step, Pending):
                return step
            step.outcome = self._store.peek(step.caller.partner, step.caller.customer)
            judged = judge(_known(step), gated.runtime)
            if isinstance(judged, Needs):
                return self._gather(step, judged)
            return self._conclude(step, judged)
        except GateError as error:
            return answer_error(error, gated.trace)

    async def _gather(self, pending: Pending, needs: Needs) -> Action:
        """Gather what the judge needs (the lookup, the current subscription), then ask again."""
        gated = pending.gated
        try:
            while True:
                await self._fetch(pending, needs)
                judged = judge(_known(pending), gated.runtime)
                if not isinstance(judged, Needs):
                    return self._conclude(pending, judged)
                needs = judged
        except GateError as error:
            return answer_error(error, gated.trace)

    async def _fetch(self, pending: Pending, needs: Needs) -> None:
        """Fill in the fact the judge needs."""
        gated, caller = pending.gated, pending.caller
        if needs is NEEDS_ACCEPTANCE:
            pending.outcome = await self._store.lookup(
                caller.partner,
                caller.customer,
                pending.authorization,
                gated.trace.correlation,
                gated.runtime.lookup_rules,
            )
            return
        pending.kind = await self._changed_kind(gated, pending.authorization, pending.doc)
        pending.compared = True

    def _identify(self, gated: Gated, head: Head, raw: bytes) -> Action | Pending:
        """Everything before the acceptance store: exemptions, body rules, the partner, R6."""
        runtime, transaction, target, trace = (
            gated.runtime,
            gated.transaction,
            gated.target,
            gated.trace,
        )
        trace.partner = self._partner(runtime, head)
        policy = runtime.policy
        exempt = policy.exemption(trace.partner) if trace.partner and gated.exemptable else None
        if exempt is not None:  # this partner's policy is off: no body rules apply either
            trace.verdict, trace.reason = exempt.verdict, exempt.reason
            return Forward(target, Verdict.EXEMPT, raw, trace=trace)
        doc = body.parse(raw)
        trace.facts = _facts(runtime, transaction.when, doc)
        if not _gated_by_body(runtime, transaction.when, doc):  # not gated: no identity (R2)
            trace.gated = False
            return Forward(target, body=raw, trace=trace)
        if trace.partner is None:
            raise _unknown_partner(runtime)
        caller = Caller(trace.partner, transaction.customer, body.resellers(doc))
        if transaction.kind == "confirmation":
            check(doc)
            trace.verdict, trace.reason = Verdict.ALLOWED, Reason.CONFIRMATION
            trace.facts = "attestation" if attestation_id(doc) is not None else None
            if not counts(doc, runtime.lookup_rules, datetime.now(UTC)):
                trace.facts = "not_counted"  # forwarded, but it does not confirm under R4
                return Forward(target, Verdict.ALLOWED, raw, trace=trace)
            existing = runtime.lookup_rules.any_agreement
            return Forward(target, Verdict.ALLOWED, raw, caller, trace, existing)
        trace.resellers = caller.resellers
        return Pending(gated, caller, doc, raw, _first(head.getall("authorization")))

    def _conclude(self, pending: Pending, decision: Decision | None) -> Action:
        """The Action for the judge's verdict (None: the edit changes no gated field)."""
        gated, caller, outcome = pending.gated, pending.caller, pending.outcome
        assert outcome is not None
        runtime, trace, target = gated.runtime, gated.trace, gated.target
        trace.cache = outcome.cache
        trace.acceptance = "denied" if outcome.denied is not None else outcome.state
        if outcome.source:
            trace.source = outcome.source
        if decision is None:  # the edit changes no gated field: not a gated call after all
            trace.gated = False
            trace.facts = "same_quantity" if trace.facts in ("quantity", None) else (
                f"same_{trace.facts}"
            )  # fmt: skip
            return Forward(target, body=pending.raw, trace=trace)
        kind = pending.kind if pending.kind is not None else _named_kind(gated, pending.doc)
        if kind != gated.transaction.kind:  # a term change, or a seat change by its fields
            transaction = gated.transaction.with_kind(kind)
            gated = Gated(runtime, transaction, target, trace, gated.exemptable)
            trace.transaction = gated.transaction
        denied = outcome.denied
        if denied is not None and decision.reason is Reason.UPSTREAM_DENIED:
            trace.verdict, trace.reason = Verdict.BLOCKED, "upstream_denied"
            headers = (*denied.headers, (b"X-Gate-Decision", b"blocked"))  # as it came
            return Answer(
                denied.status, denied.body, headers, denied.reason, trace=trace, own=False
            )
        trace.verdict, trace.reason = decision.verdict, decision.reason
        trace.why = outcome.why  # what the lookup found missing (before_accepted_since, ...)
        if decision.verdict is Verdict.BLOCKED:
            refused = refusal(
                runtime, decision, gated.transaction, caller, outcome.retry_after, outcome.why
            )
            return answer_error(refused, trace)
        return Forward(target, decision.verdict, pending.raw, trace=trace)

    async def _changed_kind(self, gated: Gated, authorization: str, doc: Any) -> str | None:
        """What a subscription edit changes against the current one: its kind, None if nothing."""
        fields = gated.runtime.edit_fields or ()
        if not isinstance(doc, dict):
            return "seat_change"  # not JSON: treated as a seat change (§1.1)
        current = await self._read_subscription(gated.target.partition("?")[0], authorization)
        return edits.kind_of(edits.changed(doc, current, fields))

    def _partner(self, runtime: Runtime, head: Head) -> str | None:
        if runtime.partner_header:
            return partner_from_header(head.getall(runtime.partner_header.lower()))
        authorizations = head.getall("authorization")
        if len(authorizations) != 1:
            return None
        partner: str | None = self._partner_of_token(authorizations[0])
        return partner


def _token_partner(authorization: str) -> str | None:
    return partner_from_token((authorization,))


def _first(values: Any) -> str:
    return str(values[0]) if values else ""


def _unknown_partner(runtime: Runtime) -> PartnerUnknown:
    source = (
        f"the {runtime.partner_header} header"
        if runtime.partner_header
        else "a bearer token with exactly one tid claim"
    )
    return PartnerUnknown(
        f"The gate cannot identify the calling partner: it needs {source}.",
        [{"expected": source}],
    )


def _check_transfer_coding(codings: Any) -> None:
    """Only plain chunking: the gate re-frames bodies and cannot carry other codings on."""
    if ",".join(codings).lower().replace(" ", "") != "chunked":
        raise AmbiguousBody(
            "Only 'Transfer-Encoding: chunked' is accepted; other transfer codings would "
            "reach the upstream under a different framing than they were sent with.",
            [{"header": "Transfer-Encoding"}],
        )


def _facts(runtime: Runtime, when: str, doc: Any) -> str | None:
    """The body facts a rule's ``when`` turned on, for the log (and ``gate replay``).

    Subscription edits: ``quantity``/``no_quantity`` under ``seat_changes`` (as
    ever), else ``fields:`` and every edit field the body names.
    """
    if when == "adds_line_items":
        return "cancel_only" if body.is_cancel_only(doc) else "adds_line_items"
    if when == "changes_quantity":
        if runtime.edit_fields not in (None, ("quantity",)):
            return edits.facts(doc, EDIT_FIELDS)
        return "no_quantity" if body.requested_quantity(doc) is None else "quantity"
    return None


def _gated_by_body(runtime: Runtime, when: str, doc: Any) -> bool:
    if when == "adds_line_items":
        return not body.is_cancel_only(doc)
    if when == "changes_quantity" and runtime.edit_fields is not None:
        return bool(edits.named(doc, runtime.edit_fields))
    return True


def _named_kind(gated: Gated, doc: Any) -> str:
    """A subscription edit's kind by the fields it names (no comparison made); else the rule's."""
    fields = gated.runtime.edit_fields
    if gated.transaction.when != "changes_quantity" or fields is None:
        return gated.transaction.kind
    return edits.kind_of(edits.named(doc, fields)) or gated.transaction.kind
