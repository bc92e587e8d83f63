"""Forward: carry out a Forward action, streaming the call upstream and its answer back.

This module is the one boundary where upstream failures become gate errors
(``UpstreamUnavailable`` 502, ``UpstreamTimeout`` 504). Request headers go
upstream as the client sent them (raw bytes, order and repeats kept) minus
hop-by-hop ones; the answer's status line and headers come back as the
upstream sent them, with nothing added but framing and ``X-Gate-Decision``.
Bodies are streamed both ways, so a 1 GB body costs what a 1 KB one does.
Nothing is retried here; ``gate.http.upstream`` re-sends only an idempotent
call whose pooled connection turned out dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gate.core.action import Forward, answer_error
from gate.errors import GateError, UpstreamTimeout, UpstreamUnavailable
from gate.http.connection import Connection
from gate.http.cycle import Cycle
from gate.http.head import RequestHead
from gate.http.limits import BUFFER_ANSWER, INSPECT_ANSWER
from gate.http.request_body import Body
from gate.http.upstream import UpstreamClosed, UpstreamPool, UpstreamResponse
from gate.http.vocabulary import PLAIN_TOKENS, decision_line
from gate.metrics import Metrics
from gate.tasks import Later

__all__ = ["Relayed", "Settle", "forward", "upstream_headers"]

_NO_BODY = frozenset({204, 304})


class Relayed:
    """How a forwarded call ended: the status the client got, and the body when kept."""

    __slots__ = ("body", "error", "status")

    def __init__(self, status: int, error: str | None = None, body: bytes | None = None) -> None:
        self.status = status
        self.error = error  # the gate's errorName when it answered in the upstream's place
        self.body = body  # the whole answer, when ``inspect`` asked for it and it fit


def _translated(exc: TimeoutError | UpstreamClosed, metrics: Metrics | None) -> GateError:
    """The gate's 504 or 502 for an upstream client failure (counted when ``metrics``)."""
    timed_out = isinstance(exc, TimeoutError)
    if metrics is not None:
        metrics.upstream_errors["timeout" if timed_out else "unavailable"].inc()
    if timed_out:
        return UpstreamTimeout("The upstream did not answer in time.")
    return UpstreamUnavailable("The upstream cannot be reached.")


_PLAIN_TOKENS = frozenset(token.decode() for token in PLAIN_TOKENS)  # as decoded here


def upstream_headers(
    head: RequestHead, peer: bytes, *, inspect: bool = False, proto: bytes = b"http"
) -> bytes:
    """The client's raw header lines minus hop-by-hop ones, plus X-Forwarded-*.

    ``proto``: the scheme the client spoke to the gate (X-Forwarded-Proto).
    ``inspect``: the gate reads this answer itself, so it asks for it unencoded.
    """
    found = head.found
    tokens = {
        token.strip().lower() for value in found.get("connection", ()) for token in value.split(",")
    }
    if inspect or not tokens <= _PLAIN_TOKENS:  # rare: drop what Connection names, too
        extra = {token.encode("latin-1") for token in tokens - _PLAIN_TOKENS}
        lines = head.forwardable(extra | {b"accept-encoding"} if inspect else extra)
    else:
        lines = b"".join(head.lines)
    forwarded = found.get("x-forwarded-for")
    chain = b", ".join([*(v.encode("latin-1") for v in forwarded), peer]) if forwarded else peer
    host = found.get("host")
    return b"%sX-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n%s" % (
        lines,
        chain,
        proto,
        b"X-Forwarded-Host: %s\r\n" % host[0].encode("latin-1") if host else b"",
    )


Kept = Callable[[int, bytes], None]
"""Told an answer the gate read whole (a confirmation's) before the caller gets it."""
Settle = Callable[[Relayed], None]
"""Told once how a call ended (gated calls: the log line, a confirmation recorded): before the
caller hears when the answer was read whole, else after."""


def forward(
    cycle: Cycle,
    action: Forward,
    pool: UpstreamPool,
    metrics: Metrics,
    settle: Settle | None = None,
) -> Later:
    """Send the call upstream and relay the answer to the client; the request then ends.

    A call with no body to stream (a read, or a gated call whose body the gate
    holds) goes out at once on an idle pooled connection, carried on by
    callbacks: its answer usually arrives whole with its head and goes back in
    one write (None is returned). Otherwise the coroutine that does it.
    """
    if (action.body is not None or not cycle.has_body) and _send_now(
        cycle, action, pool, metrics, settle
    ):
        return None
    return _forward(cycle, action, pool, metrics, settle)


def _send_now(
    cycle: Cycle, action: Forward, pool: UpstreamPool, metrics: Metrics, settle: Settle | None
) -> bool:
    """On an idle pooled connection, at once; False when none is free."""
    inspect = action.record is not None
    lines = upstream_headers(cycle.head, cycle.peer, inspect=inspect, proto=cycle.proto)
    sent = _Sent(cycle, action, pool, metrics, settle)
    conn = pool.send_now(cycle.method, action.target, lines, action.body, sent.told)
    if conn is None:
        return False
    sent.conn = conn
    metrics.in_flight += 1
    return True


class _Sent:
    """A call ``_send_now`` sent: its connection tells it the answer's head, or the failure."""

    __slots__ = ("action", "conn", "cycle", "metrics", "pool", "settle", "started")

    def __init__(
        self,
        cycle: Cycle,
        action: Forward,
        pool: UpstreamPool,
        metrics: Metrics,
        settle: Settle | None,
    ) -> None:
        self.cycle, self.action, self.pool = cycle, action, pool
        self.metrics, self.settle = metrics, settle
        self.conn: Connection | None = None
        self.started = time.perf_counter()

    def told(self, result: UpstreamResponse | BaseException) -> None:
        """The answer's head arrived (with what came along of its body), or the exchange failed."""
        cycle, action, metrics, settle = self.cycle, self.action, self.metrics, self.settle
        conn = self.conn
        assert conn is not None
        held: UpstreamResponse | None = None  # an answer whose slot and count are still ours
        try:
            if not isinstance(result, UpstreamResponse):
                self._failed(result)
                return
            held = upstream = result
            upstream.on_release = self.pool.give_back
            metrics.upstream_duration.observe(time.perf_counter() - self.started)
            status = upstream.status
            whole = upstream.whole() if status >= 200 and status not in _NO_BODY else None
            if whole is None or cycle.method == "HEAD":
                relay = _relay_and_release(cycle, upstream, action, metrics, settle)
                held = None  # the relay releases them now
                cycle.carry_on(relay)
                return
            block = upstream.relayed + decision_line(action.decision)
            if settle is not None:  # recorded and logged before the caller hears (confirmations)
                settle(Relayed(status, None, whole))
            cycle.respond(status, upstream.reason_bytes, block, length=len(whole), body=whole)
            held = None
            metrics.in_flight -= 1
            upstream.release()
            cycle.done()
        except Exception as exc:  # a bug: the connection must not be left hanging
            if held is not None:  # after the head: its connection closed, its slot and count freed
                metrics.in_flight -= 1
                conn.close()
                held.release()
            cycle.fail(exc)

    def _failed(self, error: BaseException) -> None:
        """No answer: the one re-send of a read on a fresh connection, or a 502/504."""
        cycle, action, pool, metrics = self.cycle, self.action, self.pool, self.metrics
        conn = self.conn
        assert conn is not None
        pool.abandon(conn)
        metrics.in_flight -= 1
        if not isinstance(error, TimeoutError | UpstreamClosed):
            raise error  # not an exchange failure: a bug, answered 500 by told()
        resend = action.body is None and isinstance(error, UpstreamClosed)
        if resend and pool.retryable(conn, cycle.method):
            # A pooled connection the upstream had closed: the one re-send, on a new one.
            cycle.carry_on(_forward(cycle, action, pool, metrics, self.settle, fresh=True))
            return
        refused = _refuse(cycle, _translated(error, metrics), action.decision)
        _settled(cycle, refused, self.settle)


def _settled(cycle: Cycle, relayed: Relayed, settle: Settle | None) -> None:
    if settle is not None:
        settle(relayed)
    cycle.done()


class _Once:
    """``settle`` told exactly once: before the caller hears (an answer read whole) or after."""

    __slots__ = ("settle", "told")

    def __init__(self, settle: Settle | None) -> None:
        self.settle = settle
        self.told = False

    def kept(self, status: int, whole: bytes) -> None:
        self.told = True
        if self.settle is not None:
            self.settle(Relayed(status, None, whole))

    def ended(self, cycle: Cycle, relayed: Relayed | None) -> None:
        """Told unless it was already; also when the client left mid-answer."""
        if self.settle is not None and not self.told:
            self.told = True
            self.settle(relayed or Relayed(cycle.status if cycle.sent else 499))


async def _relay_and_release(
    cycle: Cycle,
    upstream: UpstreamResponse,
    action: Forward,
    metrics: Metrics,
    settle: Settle | None,
) -> None:
    once = _Once(settle)
    relayed: Relayed | None = None
    inspect = action.record is not None
    try:
        relayed = await _relay(cycle, upstream, metrics, action.decision, inspect, once.kept)
    finally:
        upstream.release()
        metrics.in_flight -= 1
        once.ended(cycle, relayed)
    cycle.done()


async def _forward(
    cycle: Cycle,
    action: Forward,
    pool: UpstreamPool,
    metrics: Metrics,
    settle: Settle | None,
    *,
    fresh: bool = False,
) -> None:
    """Send the call upstream (streaming its body) and relay the answer; then end the request.

    ``fresh``: on a new connection, never a pooled one (the re-send of a call
    whose pooled connection turned out closed).
    """
    once = _Once(settle)
    relayed: Relayed | None = None
    try:
        relayed = await _exchange(cycle, action, pool, metrics, fresh, once.kept)
    finally:
        once.ended(cycle, relayed)
    cycle.done()


async def _exchange(
    cycle: Cycle,
    action: Forward,
    pool: UpstreamPool,
    metrics: Metrics,
    fresh: bool,
    kept: Kept,
) -> Relayed:
    inspect = action.record is not None
    lines = upstream_headers(cycle.head, cycle.peer, inspect=inspect, proto=cycle.proto)
    payload: bytes | Body | None = action.body
    length = None
    if payload is None and cycle.has_body:
        payload, length = cycle.body, cycle.length
        cycle.body.send_continue()  # before the upstream hears of a body that may not come
    started = time.perf_counter()
    metrics.in_flight += 1
    try:
        try:
            upstream = await pool.request(
                cycle.method, action.target, lines, payload, length=length,
                retry=action.body is None, fresh=fresh,
            )  # fmt: skip  # a gated call (its body already read) is never re-sent
        except (TimeoutError, UpstreamClosed) as exc:
            return _refuse(cycle, _translated(exc, metrics), action.decision)
        except GateError as error:  # the client's body broke off: 408, or malformed chunks
            return _refuse(cycle, error, action.decision)
        metrics.upstream_duration.observe(time.perf_counter() - started)
        try:
            return await _relay(cycle, upstream, metrics, action.decision, inspect, kept)
        finally:
            upstream.release()
    finally:
        metrics.in_flight -= 1


def _refuse(cycle: Cycle, error: GateError, decision: str | None) -> Relayed:
    """Answer in the upstream's place (nothing was sent yet), then close the connection."""
    if decision is not None:
        error.headers.setdefault("X-Gate-Decision", decision)
    answer = answer_error(error)
    cycle.close = True
    cycle.send(answer)
    return Relayed(error.status, error.error_name)


async def _relay(
    cycle: Cycle,
    upstream: UpstreamResponse,
    metrics: Metrics,
    decision: str | None,
    inspect: bool,
    kept: Kept | None = None,
) -> Relayed:
    block = upstream.relayed + decision_line(decision)
    status, reason, length = upstream.status, upstream.reason_bytes, upstream.content_length
    if cycle.method == "HEAD" or status in _NO_BODY or status < 200:
        cycle.respond(status, reason, block, length=None if status in _NO_BODY else length,
                      bodiless=True)  # fmt: skip
        return Relayed(status)
    whole = upstream.whole()
    if whole is not None:  # it all came with the head: one write
        if kept is not None:
            kept(status, whole)
        cycle.respond(status, reason, block, length=len(whole), body=whole)
        return Relayed(status, None, whole)
    limit = INSPECT_ANSWER if inspect else BUFFER_ANSWER
    pieces: list[bytes] = []
    if length is None or length <= limit:
        size = 0
        try:
            while (chunk := await upstream.next_chunk()) is not None:
                pieces.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
            else:
                whole = b"".join(pieces)
                if kept is not None:
                    kept(status, whole)
                cycle.respond(status, reason, block, length=len(whole), body=whole)
                return Relayed(status, None, whole)
        except (TimeoutError, UpstreamClosed) as exc:  # nothing sent yet: still a 502/504
            return _refuse(cycle, _translated(exc, metrics), decision)
    return await _stream(cycle, upstream, status, reason, block, length, pieces, metrics)


async def _stream(
    cycle: Cycle,
    upstream: UpstreamResponse,
    status: int,
    reason: bytes,
    block: bytes,
    length: int | None,
    kept: list[bytes],
    metrics: Metrics,
) -> Relayed:
    chunked = cycle.respond(status, reason, block, length=length)
    try:
        for piece in kept:
            await cycle.write(piece, chunked)
        while (chunk := await upstream.next_chunk()) is not None:
            await cycle.write(chunk, chunked)
    except (UpstreamClosed, TimeoutError):
        # The status line is gone already: cut the connection so the client
        # sees a truncated answer, never a short body that looks complete.
        metrics.upstream_errors["aborted"].inc()
        cycle.abort()
        return Relayed(status)
    cycle.end(chunked)
    return Relayed(status)
