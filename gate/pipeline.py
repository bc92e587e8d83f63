"""The proxy's hot path: route -> (read the body -> decide) -> carry out the Action -> log.

Pass-through calls (most traffic) are routed to a Forward and streamed:
no body read, no identity, no lookup, no log line. A gated call has its
body read whole (bounded), is decided by the core, and gets exactly one
decision line once its answer is known.
"""

from __future__ import annotations

import functools
from collections.abc import Coroutine
from typing import Any

from gate.acceptance import AcceptanceStore
from gate.core.action import Action, Answer, Forward, Gated, answer_error
from gate.core.decide import Decider, Pending
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

_INLINE_BODY = 64 * 1024  # gated bodies up to this size (by Content-Length) are taken whole


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
        """Route a request head and carry it on; a coroutine when it needs a task.

        The usual calls need none: a read is sent at once, and a small gated
        call is decided when its body is in, from a cached pair, and sent at once.
        """
        action = self.decider.route(cycle.method, cycle.target, cycle.head)
        if type(action) is Forward and action.trace is None:
            if not cycle.has_body and forward_now(cycle, action, self.pool, self.metrics, None):
                return None
            return self._pass(cycle, action)
        if isinstance(action, Gated):
            length = cycle.length
            if not cycle.has_body:
                return self._decided(cycle, action, b"")
            if length is not None and length <= min(_INLINE_BODY, action.runtime.max_gated_body):
                cycle.conn.after_body(cycle, functools.partial(self._body_in, cycle, action))
                return None
            return self.handle(cycle, action)
        return self._run(cycle, action)

    async def _pass(self, cycle: Cycle, action: Forward) -> None:
        await forward(cycle, action, self.pool, self.metrics)

    def _body_in(
        self, cycle: Cycle, gated: Gated, raw: bytes | GateError | ClientGone
    ) -> Coroutine[Any, Any, None] | None:
        """A small gated body has arrived whole (or failed): decide and send, task-free."""
        if isinstance(raw, ClientGone):
            self._gone(gated)
            cycle.conn.finished(cycle)
            return None
        return self._decided(cycle, gated, raw)

    def _decided(
        self, cycle: Cycle, gated: Gated, raw: bytes | GateError
    ) -> Coroutine[Any, Any, None] | None:
        """Carry on with a gated call's body: at once from a cached pair, else in a task."""
        if isinstance(raw, GateError):
            action: Action | Pending = answer_error(raw, gated.trace)
        else:
            action = self.decider.decide_now(gated, cycle.head, raw)
        if isinstance(action, Pending):
            return self._resumed(cycle, action)
        if isinstance(action, Answer):
            self._settle(action, Relayed(action.status, action.error))
            cycle.conn.send(cycle, action)
            cycle.conn.finished(cycle)
            return None
        if self._left(cycle, action):
            self._settle(action, Relayed(499))
            cycle.conn.finished(cycle)
            return None
        settle = functools.partial(self._settle, action)
        if forward_now(cycle, action, self.pool, self.metrics, settle):
            return None
        return self._run(cycle, action)

    async def _resumed(self, cycle: Cycle, pending: Pending) -> None:
        await self._run(cycle, await self.decider.resume(pending))

    async def handle(self, cycle: Cycle, action: Gated) -> None:
        """A gated call whose body is streamed in (chunked, or large): read it, then decide."""
        trace = action.trace
        try:
            raw = await cycle.body.read(action.runtime.max_gated_body, cycle.length)
        except GateError as error:  # too large, cut short, or stalled (408)
            await self._run(cycle, answer_error(error, trace))
            return
        except ClientGone:
            self._gone(action)
            raise
        await self._run(cycle, await self.decider.decide(action, cycle.head, raw))

    async def _run(self, cycle: Cycle, action: Action) -> None:
        relayed: Relayed | None = None
        try:
            relayed = await self._execute(cycle, action)
        finally:  # one line per gated call, also when its client left mid-answer
            if relayed is None:  # the client left while its answer was on the way
                relayed = Relayed(cycle.status if cycle.sent else 499)
            self._settle(action, relayed)

    async def _execute(self, cycle: Cycle, action: Action) -> Relayed:
        if isinstance(action, Answer):
            cycle.conn.send(cycle, action)
            return Relayed(action.status, action.error)
        if self._left(cycle, action):
            return Relayed(499)
        kept = functools.partial(self._record, action) if action.record is not None else None
        return await forward(cycle, action, self.pool, self.metrics, kept=kept)

    @staticmethod
    def _left(cycle: Cycle, action: Forward) -> bool:
        """A gated call whose caller gave up during the decision is never sent.

        It may retry: placing the order now could place it twice. It never
        left the gate, so nothing is lost.
        """
        trace = action.trace
        if trace is not None and trace.gated and cycle.gone:
            trace.verdict, trace.reason = Verdict.BLOCKED, "client_gone"
            return True
        return False

    def _settle(self, action: Action, relayed: Relayed) -> None:
        """After the answer: a confirmation recorded, the decision logged and counted."""
        trace = action.trace
        if trace is None:
            return
        if relayed.error is not None:
            trace.refused(relayed.error)
        if isinstance(action, Forward):
            self._record(action, relayed.status, relayed.body)
        finish(trace, relayed.status, relayed.error, self.metrics, self.lines)

    def _record(self, action: Forward, status: int, answer: bytes | None) -> None:
        """A confirmation the upstream accepted: the pair is accepted, before the caller hears.

        Recording before the answer is written means every worker (and replica) knows
        the pair by the time the caller can send its next order.
        """
        trace, record = action.trace, action.record
        if record is None or trace is None or trace.recorded:
            return
        if proves_acceptance(status, answer, action.existing_counts):
            trace.recorded = True
            self.store.record(record.partner, record.customer)

    def _gone(self, gated: Gated) -> None:
        trace = gated.trace
        trace.verdict, trace.reason = Verdict.BLOCKED, "client_gone"
        finish(trace, 499, None, self.metrics, self.lines)
