"""The audit: every customer of one partner decided with R4, at most N lookups at once.

One task reads the customers list (``gate.audit.customers.walk``) into a
small queue; ``concurrency`` workers take customers from it and ask
``gate.acceptance.lookup.look_up`` (the gate's own lookup: the same rules,
the same ``lookup_timeout_s``), write the row, and forget it. Memory is a
page, the queue and the ids seen so far, whatever the number of customers.

Throttling as the gate does it (DESIGN §2): a lookup (or a page) answered
429 holds the partner's ``Throttle`` for its ``Retry-After`` (or
``acceptance.retry_after_s`` when it says nothing readable); no lookup
starts while it holds, and the customer is asked again afterwards, up to
``ATTEMPTS`` times, then reported ``unknown`` / ``lookup_error``.

With a shared tier (``--warm``) each definite answer is written there with
the TTL the gate gives it (``positive_ttl_s`` / ``negative_ttl_s``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from yarl import URL

from gate.acceptance.lookup import Finding, compile_rules, look_up
from gate.acceptance.shared import SharedTier
from gate.acceptance.throttle import Throttle
from gate.audit.customers import Customer, ListError, Listing, wait_out, walk
from gate.audit.progress import Progress
from gate.audit.report import RowWriter, Summary, row_of
from gate.config import Settings
from gate.core.policy import State
from gate.http.upstream import UpstreamPool

__all__ = ["ATTEMPTS", "Plan", "Result", "audit"]

ATTEMPTS = 5  # a customer is asked at most this often while Partner Center throttles


@dataclass(frozen=True, slots=True)
class Plan:
    """What one audit run does."""

    settings: Settings
    token: str
    partner: str  # the token's tid, lowercased
    concurrency: int


@dataclass(slots=True)
class Result:
    summary: Summary = field(default_factory=Summary)
    correlation: str = field(default_factory=lambda: str(uuid.uuid4()))
    throttled: int = 0  # lookups answered 429 (each asked again after the hold)
    warmed: int = 0  # answers written to the shared tier
    not_warmed: int = 0  # definite answers the shared tier did not take (down)


async def audit(
    plan: Plan,
    writer: RowWriter,
    progress: Progress,
    shared: SharedTier | None = None,
    *,
    wall: Callable[[], float] = time.time,
) -> Result:
    """Walk, decide and write every customer; ``ListError`` when the list cannot be read."""
    settings = plan.settings
    upstream = URL(settings.upstream.url)
    pool = UpstreamPool(
        upstream.with_path("/"),
        limit=plan.concurrency + 1,  # the lookups, and the list beside them
        connect_timeout=settings.upstream.connect_timeout_s,
        read_timeout=settings.upstream.read_timeout_s,
    )
    run = _Run(plan, pool, upstream.raw_path.rstrip("/"), writer, progress, shared, wall)
    try:
        await run.all()
    finally:
        pool.close()
    return run.result


class _Run:
    def __init__(
        self,
        plan: Plan,
        pool: UpstreamPool,
        prefix: str,
        writer: RowWriter,
        progress: Progress,
        shared: SharedTier | None,
        wall: Callable[[], float],
    ) -> None:
        self.plan, self.pool, self.prefix = plan, pool, prefix
        self.writer, self.progress, self.shared, self.wall = writer, progress, shared, wall
        self.result = Result()
        self.rules = compile_rules(plan.settings.policy)
        self.throttle = Throttle()
        self.authorization = f"Bearer {plan.token}"
        self.queue: asyncio.Queue[Customer | None] = asyncio.Queue(plan.concurrency * 2)
        self.failure: ListError | None = None

    async def all(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._list(), name="audit-list")
            for n in range(self.plan.concurrency):
                group.create_task(self._work(), name=f"audit-worker-{n}")
        if self.failure is not None:
            raise self.failure

    async def _list(self) -> None:
        acceptance = self.plan.settings.acceptance
        listing = Listing(
            self.pool,
            self.prefix,
            self.authorization,
            self.plan.partner,
            acceptance.lookup_timeout_s,
            float(acceptance.retry_after_s),
        )
        try:
            async for customer in walk(listing, self.throttle, wall=self.wall):
                self.progress.listed()
                await self.queue.put(customer)
        except ListError as error:  # the workers finish what is queued, then all() raises it
            self.failure = error
        for _ in range(self.plan.concurrency):
            await self.queue.put(None)  # no more: each worker stops

    async def _work(self) -> None:
        while (customer := await self.queue.get()) is not None:
            finding = await self._decide(customer)
            row = row_of(customer, finding)
            self.writer.write(row)
            self.result.summary.add(row)
            self.progress.done()
            if self.shared is not None and finding.state is not State.UNKNOWN:
                key = f"{self.plan.partner}/{customer.id}"
                if await self.shared.warm(key, finding.state, finding.source):
                    self.result.warmed += 1
                else:
                    self.result.not_warmed += 1

    async def _decide(self, customer: Customer) -> Finding:
        acceptance, partner = self.plan.settings.acceptance, self.plan.partner
        for _ in range(ATTEMPTS):
            await wait_out(self.throttle, partner)
            finding = await look_up(
                self.pool, self.prefix, customer.id, self.authorization, self.rules,
                acceptance.lookup_timeout_s, self.result.correlation, wall=self.wall,
            )  # fmt: skip
            if not finding.throttled:
                return finding
            self.result.throttled += 1
            wait = finding.retry_after
            self.throttle.hold(partner, acceptance.retry_after_s if wait is None else wait)
        return finding
