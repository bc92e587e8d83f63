"""The decision log: one line and one count per gated decision, ids only.

A ``Trace`` rides along with a gated call through the core and the front
door, and is finished once, when the caller's answer is known: then its
line is written and its verdict counted. Nothing in it is personal data:
names, emails, phone numbers and tokens never reach a trace.
"""

from __future__ import annotations

import time

from gate.core.classify import Transaction
from gate.core.policy import Verdict
from gate.logs import HotLines
from gate.metrics import Metrics

__all__ = ["Trace", "finish"]


class Trace:
    """What one gated call's decision log line will say.

    A plain class, not a dataclass: compiled, it is a native class, and a
    dataclass's generated ``__init__`` would run as interpreted Python.
    """

    __slots__ = (
        "acceptance", "cache", "correlation", "facts", "gated", "method", "partner", "path",
        "reason", "recorded", "resellers", "source", "started", "transaction", "verdict", "why",
    )  # fmt: skip

    def __init__(
        self,
        transaction: Transaction,
        method: str,
        path: str,
        correlation: str | None,
        started: float,
    ) -> None:
        self.transaction = transaction
        self.method = method
        self.path = path
        self.correlation = correlation
        self.started = started
        self.partner: str | None = None
        self.resellers: tuple[str, ...] = ()
        self.verdict: str | None = None
        self.reason = ""
        self.cache = "none"
        self.acceptance: str | None = None  # the state the store answered; None: nobody asked
        self.source: str | None = None  # what confirmed: agreement | direct | confirmation
        self.why = ""  # why a lookup did not confirm: no_agreement, before_accepted_since, ...
        self.facts: str | None = None  # what the body said that the rule's `when` turned on
        self.gated = True  # False once the body shows the call is not gated after all
        self.recorded = False  # a confirmation whose answer proved acceptance was recorded

    def refused(self, error_name: str) -> str:
        """Mark a refusal (unless a verdict that let it through stands) and say the header."""
        if self.verdict is None or self.verdict == Verdict.BLOCKED:
            self.verdict = Verdict.BLOCKED
            self.reason = self.reason or error_name
        return self.verdict


def finish(trace: Trace, status: int, error: str | None, metrics: Metrics, lines: HotLines) -> None:
    """Write the line and count the verdict.

    A call that matched a rule but whose body made it ungated is logged as
    ``not_gated`` (no count, no verdict), so a replay under another policy sees it.
    """
    verdict = None if not trace.gated else trace.verdict or Verdict.BLOCKED
    if verdict is not None:
        metrics.decisions[(trace.transaction.kind, verdict)].inc()
    if not lines.enabled:
        return
    transaction = trace.transaction
    lines.info(
        "decision" if verdict is not None else "not_gated",
        {
            "method": trace.method,
            "path": trace.path,
            "partner": trace.partner,
            "customer": transaction.customer,
            "resellers": list(trace.resellers),
            "transaction": transaction.kind,
            "rule": transaction.rule,
            "decision": verdict,
            "reason": trace.reason,
            "cache": trace.cache,
            "acceptance": trace.acceptance,
            "source": trace.source,
            "why": trace.why or None,
            "body": trace.facts,
            "status": status,
            "error": error,
            "latency_ms": round((time.perf_counter() - trace.started) * 1000, 3),
            "correlation_id": trace.correlation,
        },
    )
