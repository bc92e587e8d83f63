"""The proxy's hot path: route -> (read the body -> decide) -> carry out the Action -> log.

Pass-through calls (most traffic) are routed to a Forward and streamed:
no body read, no identity, no lookup, no log line. A gated call has its
body read whole (bounded), is decided by the core, and gets exactly one
decision line once its answer is known.
"""

from __future__ import annotations

import functools

from gate.acceptance import AcceptanceStore
from gate.core.action import Action, Answer, Forward, Gated, answer_error
from gate.core.decide import Decider
from gate.core.record import proves_acceptance
from gate.decision_log import finish
from gate.errors import GateError
from gate.http.cycle import ClientGone, Cycle
from gate.http.forward import Relayed, forward
from gate.http.upstream import UpstreamPool
from gate.logs import HotLines
from gate.metrics import Metrics
from gate.tasks import Later, then

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

    def start(self, cycle: Cycle) -> Later:
        """Route a request head and carry it on; a coroutine when it needs a task.

        The usual calls need none: a read is sent at once, and a small gated
        call is decided when its body is in, from a cached pair, and sent at once.
        """
        action = self.decider.route(cycle.method, cycle.target, cycle.head)
        if isinstance(action, Gated):
            body_in = functools.partial(self._body_in, cycle, action)
            return cycle.body_then(action.runtime.max_gated_body, body_in)
        return self._carry_out(cycle, action)

    def _body_in(self, cycle: Cycle, gated: Gated, raw: bytes | GateError | ClientGone) -> Later:
        """A gated call's whole body (or why it is missing): decide, then carry the Action out."""
        if isinstance(raw, ClientGone):
            self._gone(gated)
            cycle.done()
            return None
        if isinstance(raw, GateError):  # too large, cut short, or stalled (408)
            return self._carry_out(cycle, answer_error(raw, gated.trace))
        decided = self.decider.decide(gated, cycle.head, raw)
        return then(decided, functools.partial(self._carry_out, cycle))

    def _carry_out(self, cycle: Cycle, action: Action) -> Later:
        """Answer in the upstream's place, or forward; the request ends when that is over."""
        if isinstance(action, Answer):
            self._settle(action, Relayed(action.status, action.error))
            cycle.answer(action)
            return None
        if self._left(cycle, action):
            self._settle(action, Relayed(499))
            cycle.done()
            return None
        settle = functools.partial(self._settle, action) if action.trace is not None else None
        return forward(cycle, action, self.pool, self.metrics, settle)

    @staticmethod
    def _left(cycle: Cycle, action: Forward) -> bool:
        """A gated call whose caller gave up during the decision is never sent.

        It may retry: placing the order now could place it twice. It never
        left the gate, so nothing is lost.
        """
        trace = action.trace
        if trace is not None and trace.gated and cycle.gone:
            trace.client_gone()
            return True
        return False

    def _settle(self, action: Action, relayed: Relayed) -> None:
        """How a gated call ended: a confirmation recorded, the decision logged and counted.

        Told before the caller hears when the answer was read whole, so a
        confirmation is recorded first: every worker (and replica) knows the pair
        by the time the caller can send its next order.
        """
        trace = action.trace
        if trace is None:
            return
        if relayed.error is not None:
            trace.refused(relayed.error)
        record = action.record if isinstance(action, Forward) else None
        if (
            isinstance(action, Forward)
            and record is not None
            and not trace.recorded
            and proves_acceptance(relayed.status, relayed.body, action.existing_counts)
        ):
            trace.recorded = True
            self.store.record(record.partner, record.customer)
        finish(trace, relayed.status, relayed.error, self.metrics, self.lines)

    def _gone(self, gated: Gated) -> None:
        trace = gated.trace
        trace.client_gone()
        finish(trace, 499, None, self.metrics, self.lines)
