"""The proxy's hot path: route -> (read the body -> decide) -> carry out the Action -> log.

Pass-through calls (most traffic) are routed to a Forward and streamed:
no body read, no identity, no lookup, no log line. A gated call has its
body read whole (bounded), is decided by the core, and gets exactly one
decision line once its answer is known.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from gate.acceptance import AcceptanceStore
from gate.core.action import Action, Answer, Forward, Gated, answer_error
from gate.core.decide import Decider
from gate.core.policy import Verdict
from gate.core.record import proves_acceptance
from gate.core.trace import finish
from gate.errors import GateError
from gate.http.cycle import ClientGone, Cycle
from gate.http.forward import Relayed, forward, forward_now
from gate.http.upstream import UpstreamPool
from gate.logs import HotLines
from gate.metrics import Metrics

__all__ = ["Pipeline"]


class Pipeline:
    """What every proxied request goes through; one per process."""

    __slots__ = ("decider", "lines", "metrics", "pool", "store")

    def __init__(
        self,
        decider: Decider,
        pool: UpstreamPool,
        store: AcceptanceStore,
        metrics: Metrics,
        lines: HotLines,
    ) -> None:
        self.decider, self.pool, self.store = decider, pool, store
        self.metrics, self.lines = metrics, lines

    def start(self, cycle: Cycle) -> Coroutine[Any, Any, None] | None:
        """Route a request head; a bodiless pass-through call is sent at once, without a task."""
        action = self.decider.route(cycle.method, cycle.target, cycle.head)
        if (
            type(action) is Forward
            and action.trace is None
            and not cycle.has_body
            and forward_now(cycle, action, self.pool, self.metrics)
        ):
            return None
        return self.handle(cycle, action)

    async def handle(self, cycle: Cycle, action: Action | Gated) -> None:
        if isinstance(action, Forward) and action.trace is None:
            await forward(cycle, action, self.pool, self.metrics)  # pass-through
            return
        if isinstance(action, Gated):
            trace = action.trace
            try:
                raw = await cycle.body.read(action.runtime.max_gated_body, cycle.length)
            except GateError as error:  # too large, cut short, or stalled (408)
                action = answer_error(error, trace)
            except ClientGone:
                trace.verdict, trace.reason = Verdict.BLOCKED, "client_gone"
                finish(trace, 499, None, self.metrics, self.lines)
                raise
            else:
                action = await self.decider.decide(action, cycle.head, raw)
        relayed: Relayed | None = None
        try:
            relayed = await self._execute(cycle, action)
        finally:  # one line per gated call, also when its client left mid-answer
            if action.trace is not None:
                if relayed is None:  # the client left while its answer was on the way
                    relayed = Relayed(cycle.status if cycle.sent else 499)
                finish(action.trace, relayed.status, relayed.error, self.metrics, self.lines)

    async def _execute(self, cycle: Cycle, action: Answer | Forward) -> Relayed:
        if isinstance(action, Answer):
            cycle.conn.send(cycle, action)
            return Relayed(action.status, action.error)
        trace = action.trace
        if trace is not None and trace.gated and cycle.gone:
            # The caller gave up during the lookup and may retry: placing the order
            # now could place it twice. It never left the gate, so nothing is lost.
            trace.verdict, trace.reason = Verdict.BLOCKED, "client_gone"
            return Relayed(499)
        relayed = await forward(cycle, action, self.pool, self.metrics)
        if relayed.error is not None and trace is not None:
            trace.refused(relayed.error)
        if action.record is not None and proves_acceptance(relayed.status, relayed.body):
            self.store.record(action.record.partner, action.record.customer)
        return relayed
