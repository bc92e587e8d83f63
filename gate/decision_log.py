"""The decision log: one line and one count per gated call, ids only, once its answer is known.

Written outside the core: the core fills a ``Trace`` in; the front door
(``gate.pipeline``, the decision services) calls ``finish`` once, when it
knows the status the caller got. Nothing in a line is personal data.
"""

from __future__ import annotations

import time

from gate.core.policy import Verdict
from gate.core.trace import Trace
from gate.logs import HotLines
from gate.metrics import Metrics

__all__ = ["finish"]


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
