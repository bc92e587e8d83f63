"""A gated call, after classification: identify -> decide -> forward | answer -> record.

The body is read whole (bounded) because every later step may need it: the
seat count, the line items, the reseller, the confirmation payload. Exactly
one decision is logged and counted per gated call; a call that turns out not
to be gated (a cancel-only order edit, an edit that changes no seats) is
forwarded like any other, with no header and no log line.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

from gate.core import body
from gate.core.classify import Transaction
from gate.core.identity import Caller, partner_from_header, partner_from_token
from gate.core.policy import Decision, Reason, State, Verdict
from gate.errors import (
    AcceptanceStatusUnavailable,
    AmbiguousBody,
    BodyTooLarge,
    CustomerAcceptanceRequired,
    GateError,
    PartnerUnknown,
)
from gate.http.forward import DECISION_HEADER, fetch, forward
from gate.keys import LOGGER, METRICS, STORE, UPSTREAM
from gate.record import check, forward_and_record
from gate.runtime import Runtime

__all__ = ["handle_gated"]


@dataclass(slots=True)
class _Trace:
    """What one gated call's decision log line will say."""

    transaction: Transaction
    started: float
    method: str
    path: str
    partner: str | None = None
    acceptance: str | None = None  # the state the store answered; None when nobody asked
    facts: str | None = None  # what the body said that the rule's `when` depends on
    resellers: tuple[str, ...] = ()
    verdict: str | None = None
    reason: str = ""
    cache: str = "none"
    gated: bool = True  # False once the body shows the call is not gated after all


async def handle_gated(
    request: web.Request, runtime: Runtime, transaction: Transaction, target: str, path: str
) -> web.StreamResponse:
    trace = _Trace(transaction, time.perf_counter(), request.method, path)
    try:
        response = await _decide_and_forward(request, runtime, transaction, target, trace)
    except GateError as error:
        if not trace.gated:
            raise  # forwarded like any ungated call: no header, no decision
        if trace.verdict is None or trace.verdict == Verdict.BLOCKED:
            trace.verdict = Verdict.BLOCKED.value
            trace.reason = trace.reason or error.error_name
        error.headers.setdefault(DECISION_HEADER, trace.verdict)
        _record(request, trace, error.status, error.error_name)
        raise
    if trace.verdict is not None or not trace.gated:
        _record(request, trace, response.status, None)
    return response


async def _decide_and_forward(
    request: web.Request, runtime: Runtime, transaction: Transaction, target: str, trace: _Trace
) -> web.StreamResponse:
    app = request.app
    # Exemption lifts gating; a confirmation is not gated, so R6/R5 still apply to it,
    # except on a national cloud, which does not support confirmation at all.
    exemptable = transaction.kind != "confirmation" or runtime.policy.national_cloud
    exempt = runtime.policy.blanket_exemption() if exemptable else None
    if exempt is not None:  # R8 / mode off: forwarded as sent, nothing read or checked
        trace.verdict, trace.reason = exempt.verdict.value, exempt.reason.value
        return await forward(request, app[UPSTREAM], target, app[METRICS], decision="exempt")
    raw = await _read_body(request, runtime.max_gated_body)
    trace.partner = _known_partner(runtime, request.headers)
    exempt = runtime.policy.exemption(trace.partner) if trace.partner and exemptable else None
    if exempt is not None:  # this partner's policy is off: no body rules apply either
        trace.verdict, trace.reason = exempt.verdict.value, exempt.reason.value
        return await forward(request, app[UPSTREAM], target, app[METRICS], body=raw,
                             decision="exempt")  # fmt: skip
    doc = body.parse(raw)
    trace.facts = _facts(transaction, doc)
    if not _gated_by_body(runtime, transaction, doc):  # not gated: no identity needed (R2)
        trace.gated = False
        return await forward(request, app[UPSTREAM], target, app[METRICS], body=raw)
    # Identified once, above; an unknown partner is refused here with its reason.
    partner = trace.partner or _partner(runtime, request.headers)
    if transaction.kind == "confirmation":
        check(doc)
        trace.verdict, trace.reason = Verdict.ALLOWED.value, Reason.CONFIRMATION.value
        return await forward_and_record(request, transaction.customer, partner, raw, target)
    caller = Caller(partner, transaction.customer, body.resellers(doc))
    trace.resellers = caller.resellers
    decision = await _decide(request, runtime, transaction, caller, doc, target, trace)
    if decision is None:  # the edit changes no seats: not a gated call after all
        trace.gated = False
        return await forward(request, app[UPSTREAM], target, app[METRICS], body=raw)
    if isinstance(decision, web.Response):
        return decision
    trace.verdict, trace.reason = decision.verdict.value, decision.reason.value
    if decision.verdict is Verdict.BLOCKED:
        raise _refusal(runtime, decision, transaction, caller)
    if request.transport is None or request.transport.is_closing():
        # The caller gave up during the lookup and may retry: placing the order
        # now could place it twice. It never left the gate, so nothing is lost.
        trace.verdict, trace.reason = Verdict.BLOCKED.value, "client_gone"
        return web.Response(status=499)
    return await forward(
        request, app[UPSTREAM], target, app[METRICS],
        body=raw, decision=decision.verdict.value,
    )  # fmt: skip


def _known_partner(runtime: Runtime, headers: CIMultiDictProxy[str]) -> str | None:
    try:
        return _partner(runtime, headers)
    except PartnerUnknown:
        return None  # an unknown partner has no override: the call is checked as usual


def _partner(runtime: Runtime, headers: CIMultiDictProxy[str]) -> str:
    if runtime.partner_header:
        partner = partner_from_header(headers.getall(runtime.partner_header, ()))
        source = f"the {runtime.partner_header} header"
    else:
        partner = partner_from_token(headers.getall("Authorization", ()))
        source = "a bearer token with exactly one tid claim"
    if partner is None:
        raise PartnerUnknown(
            f"The gate cannot identify the calling partner: it needs {source}.",
            [{"expected": source}],
        )
    return partner


async def _read_body(request: web.Request, limit: int) -> bytes:
    """A gated call's whole body, which the gate must read before deciding."""
    if "Content-Encoding" in request.headers:
        encodings = {v.strip().lower() for v in request.headers.getall("Content-Encoding")}
        if encodings - {"", "identity"}:
            raise AmbiguousBody(
                "The gate cannot inspect an encoded body on a gated call; send it unencoded.",
                [{"header": "Content-Encoding"}],
            )
    length = request.content_length
    if length == 0:
        return b""
    if length is not None and length <= limit:
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError:
            raise AmbiguousBody("The body ended before its Content-Length.", []) from None
    chunks: list[bytes] = []
    size = 0
    if length is None:  # chunked: read up to the limit
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
    raise BodyTooLarge(f"A gated call's body may be at most {limit} bytes.", [{"limit": limit}])


def _facts(transaction: Transaction, doc: Any) -> str | None:
    """The body facts a rule's ``when`` turned on, for the log (and ``gate replay``)."""
    if transaction.when == "adds_line_items":
        return "cancel_only" if body.is_cancel_only(doc) else "adds_line_items"
    if transaction.when == "changes_quantity":
        return "no_quantity" if body.requested_quantity(doc) is None else "quantity"
    return None


def _gated_by_body(runtime: Runtime, transaction: Transaction, doc: Any) -> bool:
    if transaction.when == "adds_line_items":
        return not body.is_cancel_only(doc)
    if transaction.when == "changes_quantity" and runtime.seat_changes_only:
        return body.requested_quantity(doc) is not None
    return True


async def _decide(
    request: web.Request,
    runtime: Runtime,
    transaction: Transaction,
    caller: Caller,
    doc: Any,
    target: str,
    trace: _Trace,
) -> Decision | web.Response | None:
    """The decision; an upstream denial to relay as it came; or None: no seat change."""
    exempt = runtime.policy.exemption(caller.partner)
    if exempt is not None:
        return exempt
    store = request.app[STORE]
    outcome = store.peek(caller.partner, caller.customer) or await store.lookup(
        caller.partner,
        caller.customer,
        request.headers.get("Authorization", ""),
        request.headers.get("MS-CorrelationId"),
    )
    trace.cache = outcome.cache
    trace.acceptance = "denied" if outcome.denied is not None else outcome.state.value
    now = time.time()
    if outcome.denied is not None:
        verdict = runtime.policy.decide(caller.partner, caller.customer, State.NOT_ACCEPTED, now)
        if verdict.verdict is not Verdict.BLOCKED:  # observing, not enforcing: forward, flagged
            return verdict
        trace.verdict, trace.reason = Verdict.BLOCKED.value, "upstream_denied"
        denied = outcome.denied
        headers = denied.headers.copy()  # as it came, less hop-by-hop framing
        headers[DECISION_HEADER] = Verdict.BLOCKED.value
        return web.Response(
            status=denied.status, reason=denied.reason, headers=headers, body=denied.body
        )
    if (
        outcome.state is not State.ACCEPTED
        and transaction.when == "changes_quantity"
        and runtime.seat_changes_only
        and not await _changes_seats(request, runtime, doc, target)
    ):
        trace.facts = "same_quantity"
        return None
    return runtime.policy.decide(caller.partner, caller.customer, outcome.state, now)


async def _changes_seats(request: web.Request, runtime: Runtime, doc: Any, target: str) -> bool:
    """Whether a subscription edit asks for another seat count than the current one."""
    wanted = body.requested_quantity(doc)
    if not isinstance(wanted, int):
        return True
    headers = {
        "Authorization": request.headers.get("Authorization", ""),
        "Accept": "application/json",
    }
    try:
        fetched = await fetch(
            request.app[UPSTREAM],
            target.partition("?")[0],
            headers,
            runtime.settings.acceptance.lookup_timeout_s,
        )
        current = body.parse(fetched.body) if fetched.status == 200 else None
    except GateError:
        return True  # unreadable: treated as a seat change
    have = body.requested_quantity(current)
    return not isinstance(have, int) or have != wanted


def _refusal(
    runtime: Runtime, decision: Decision, transaction: Transaction, caller: Caller
) -> GateError:
    if decision.reason is Reason.LOOKUP_ERROR:
        retry_after = str(runtime.settings.acceptance.retry_after_s)
        return AcceptanceStatusUnavailable(
            "The gate could not confirm the customer's acceptance of the Microsoft Cloud "
            "Agreement right now, and policy holds gated calls until it can. Retry later.",
            [{"customer": caller.customer, "partner": caller.partner}],
            headers={"Retry-After": retry_after},
        )
    resolve = f"POST /v1/customers/{caller.customer}/agreements"
    return CustomerAcceptanceRequired(
        f"Customer {caller.customer} has no confirmed acceptance of the Microsoft Cloud "
        f"Agreement for partner {caller.partner}, which a {transaction.kind} requires. "
        f"Confirm it with {resolve}, then retry.",
        [
            {
                "customer": caller.customer,
                "partner": caller.partner,
                "transaction": transaction.kind,
                "rule": transaction.rule,
                "resolve": resolve,
            }
        ],
    )


def _record(request: web.Request, trace: _Trace, status: int, error: str | None) -> None:
    """One log line and one count per gated decision; ids only, never personal data.

    A call that matched a rule but whose body made it ungated is logged as
    ``not_gated`` (no count, no verdict), so a replay under another policy sees it.
    """
    verdict = None if not trace.gated else trace.verdict or Verdict.BLOCKED.value
    if verdict is not None:
        request.app[METRICS].decisions[(trace.transaction.kind, verdict)].inc()
    request.app[LOGGER].info(
        "decision" if verdict is not None else "not_gated",
        method=trace.method,
        path=trace.path,
        partner=trace.partner,
        customer=trace.transaction.customer,
        resellers=list(trace.resellers),
        transaction=trace.transaction.kind,
        rule=trace.transaction.rule,
        decision=verdict,
        reason=trace.reason,
        cache=trace.cache,
        acceptance=trace.acceptance,
        body=trace.facts,
        status=status,
        error=error,
        latency_ms=round((time.perf_counter() - trace.started) * 1000, 3),
        correlation_id=request.headers.get("MS-CorrelationId"),
    )
