"""gate.decision_log: a gated call's one decision line and one count."""

from __future__ import annotations

import io

from prometheus_client import generate_latest

from gate import __version__
from gate.core.classify import Transaction
from gate.core.policy import Verdict
from gate.core.trace import Trace
from gate.decision_log import finish
from gate.logs import HotLines, make_logger
from gate.metrics import Metrics
from tests.core.test_trace import trace
from tests.support import (
    CONTACT_EMAIL,
    CONTACT_FIRST,
    CONTACT_LAST,
    CUSTOMER,
    PARTNER_A,
    RESELLER,
    log_lines,
    metric,
)

FIELDS = {
    "event", "level", "timestamp", "method", "path", "partner", "customer", "resellers",
    "transaction", "rule", "decision", "reason", "cache", "acceptance", "source", "why", "body",
    "status", "error", "latency_ms", "correlation_id",
}  # fmt: skip


def hot_lines(stream: io.StringIO, level: str = "info") -> HotLines:
    return HotLines(level, "json", stream, make_logger(level, "json", stream))


def counted(metrics: Metrics, verdict: str, kind: str = "new_purchase") -> float:
    text = generate_latest(metrics.registry).decode()
    return metric(text, "gate_decisions_total", transaction=kind, decision=verdict)


# -- finish ----------------------------------------------------------------------


def test_finish_writes_one_line_and_counts_the_verdict() -> None:
    """§5: one JSON line per gated decision, with ids only, and one count by kind and verdict."""
    stream, metrics = io.StringIO(), Metrics(__version__)
    done = trace(
        partner=PARTNER_A, resellers=(RESELLER,), verdict=Verdict.ALLOWED, reason="accepted",
        cache="hit", acceptance="accepted", source="agreement", facts="adds_line_items",
    )  # fmt: skip
    finish(done, 201, None, metrics, hot_lines(stream))
    [line] = log_lines(stream)
    assert set(line) == FIELDS
    assert line["event"] == "decision"
    assert (line["method"], line["path"]) == ("POST", f"/v1/customers/{CUSTOMER}/orders")
    assert (line["partner"], line["customer"], line["resellers"]) == (
        PARTNER_A,
        CUSTOMER,
        [RESELLER],
    )
    assert (line["transaction"], line["rule"]) == ("new_purchase", "create-order")
    assert (line["decision"], line["reason"], line["status"], line["error"]) == (
        "allowed",
        "accepted",
        201,
        None,
    )
    assert (line["cache"], line["acceptance"], line["source"]) == ("hit", "accepted", "agreement")
    assert (line["why"], line["body"], line["correlation_id"]) == (
        None,
        "adds_line_items",
        "corr-1",
    )
    assert line["latency_ms"] >= 0
    assert counted(metrics, "allowed") == 1
    assert counted(metrics, "blocked") == 0


def test_a_trace_finished_without_a_verdict_is_logged_and_counted_as_blocked() -> None:
    """Fail closed in the log too: a gated call that ended with no verdict was not let through."""
    stream, metrics = io.StringIO(), Metrics(__version__)
    finish(trace(), 400, "AmbiguousBody", metrics, hot_lines(stream))
    [line] = log_lines(stream)
    assert (line["decision"], line["status"], line["error"]) == ("blocked", 400, "AmbiguousBody")
    assert counted(metrics, "blocked") == 1


def test_a_call_its_body_made_ungated_is_logged_not_gated_and_not_counted() -> None:
    """A cancel-only PATCH: a ``not_gated`` line (for replay), no verdict, no count."""
    stream, metrics = io.StringIO(), Metrics(__version__)
    finish(trace(gated=False, facts="cancel_only"), 200, None, metrics, hot_lines(stream))
    [line] = log_lines(stream)
    assert (line["event"], line["decision"], line["body"]) == ("not_gated", None, "cancel_only")
    assert all(counted(metrics, verdict) == 0 for verdict in Verdict)


def test_above_info_nothing_is_written_but_the_verdict_is_counted() -> None:
    """log.level = warning silences the decision lines, never the metrics."""
    stream, metrics = io.StringIO(), Metrics(__version__)
    finish(trace(verdict=Verdict.BLOCKED), 403, None, metrics, hot_lines(stream, "warning"))
    assert stream.getvalue() == ""
    assert counted(metrics, "blocked") == 1


def test_the_line_carries_no_token_or_personal_data() -> None:
    """§5: a confirmation's contact and the caller's token never reach the decision line.

    The trace has no field for them; this pins that the line is built from the trace alone.
    """
    stream, metrics = io.StringIO(), Metrics(__version__)
    confirmation = Transaction(
        kind="confirmation", rule="confirm-acceptance", when="always", customer=CUSTOMER
    )
    done = Trace(confirmation, "POST", f"/v1/customers/{CUSTOMER}/agreements", None, 0.0)
    done.partner, done.verdict, done.facts = PARTNER_A, Verdict.ALLOWED, "attestation"
    finish(done, 201, None, metrics, hot_lines(stream))
    written = stream.getvalue()
    for private in (CONTACT_EMAIL, CONTACT_FIRST, CONTACT_LAST, "Bearer", "eyJ"):
        assert private not in written
    assert log_lines(stream)[0]["transaction"] == "confirmation"
