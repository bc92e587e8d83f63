"""gate.core.action: the gate's own refusal as an Answer value, with the decision header."""

from __future__ import annotations

import json
import time

from gate.core.action import Answer, answer_error
from gate.core.classify import Transaction
from gate.core.trace import Trace
from gate.errors import AmbiguousBody, UpstreamUnavailable


def _trace(verdict: str | None = None) -> Trace:
    transaction = Transaction("new_order", "orders", "always", "c0ffee00")
    trace = Trace(transaction, "POST", "/v1/customers/c0ffee00/orders", None, time.perf_counter())
    trace.verdict = verdict
    return trace


def _headers(answer: Answer) -> dict[bytes, bytes]:
    return dict(answer.headers)


def test_a_refusal_renders_the_partner_center_error_shape() -> None:
    """DESIGN §2: status, JSON body with errorName, and the errorName kept for the log."""
    answer = answer_error(AmbiguousBody("Two bodies.", [{"header": "Content-Length"}]))
    assert answer.status == 400
    assert json.loads(answer.body)["errorName"] == "AmbiguousBody"
    assert answer.error == "AmbiguousBody"
    assert b"X-Gate-Decision" not in _headers(answer)  # not a gated call: no decision
    assert answer.own


def test_a_gated_refusal_says_blocked_and_marks_the_trace() -> None:
    """A refused gated call carries X-Gate-Decision: blocked, and its log line says why."""
    trace = _trace()
    answer = answer_error(AmbiguousBody("Two bodies.", []), trace)
    assert _headers(answer)[b"X-Gate-Decision"] == b"blocked"
    assert (trace.verdict, trace.reason) == ("blocked", "AmbiguousBody")
    assert answer.trace is trace


def test_a_failure_after_an_allowing_verdict_keeps_the_verdict() -> None:
    """An allowed call whose upstream is down says allowed: the gate did not block it."""
    trace = _trace("allowed")
    answer = answer_error(UpstreamUnavailable("Down."), trace)
    assert answer.status == 502
    assert _headers(answer)[b"X-Gate-Decision"] == b"allowed"
    assert trace.verdict == "allowed"
