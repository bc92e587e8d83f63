"""A client connection's state, clocks and flow control: what it waits for, and how long.

The connection's state is written down (h11's "state in one place", uvicorn's
``flow_control.py``): a named state saying what it waits for, a set of pause
reasons for reading, and its three clocks (the state's own: head or
keep-alive; a body reader waiting; a client not reading its answer) as due
times folded into one deadline, so a tick is one comparison for every
connection with nothing due.

``ConnectionState`` holds all of it and the socket's writing side;
``gate.http.protocol.ProxyProtocol`` extends it with parsing, pipelining and
refusals. Neither has a Python base class: compiled in one mypyc group, a
native class and its native subclass keep every attribute a struct field.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Final

from gate.http.cycle import ClientGone

if TYPE_CHECKING:
    from gate.http.server import FrontDoor

__all__ = [
    "ANSWERING",
    "BODY",
    "CLOSED",
    "FOR_BODY",
    "FOR_QUEUE",
    "HEAD",
    "IDLE",
    "NEVER",
    "STOPPED",
    "ConnectionState",
]

# The connection's state: what it waits for, and so which of its own clocks runs.
IDLE: Final = 0  # nothing asked, nothing owed: the keep-alive clock (header_timeout_s at first)
HEAD: Final = 1  # a head is arriving: the head clock, unless the gate itself paused reading
BODY: Final = 2  # the running or a queued request's body is arriving: no clock of its own
ANSWERING: Final = 3  # every request sent is in, answers are owed: no clock of its own
STOPPED: Final = 4  # parse nothing more (an Upgrade offer, a refusal): answer, then close
CLOSED: Final = 5  # closed or cut: nothing more is read or written
_STATES: Final = ("idle", "head", "body", "answering", "stopped", "closed")
NEVER: Final = math.inf  # the due time of a clock that is not running

# Why reading from the client is paused: a set of these bits; reading resumes when it is empty.
FOR_BODY: Final = 1  # more than HIGH_WATER of body bytes wait unread
FOR_QUEUE: Final = 2  # a pipelined request waits for the one running


class ConnectionState:
    """A client connection's state, clocks and flow control, and its socket's writing side.

    An asyncio protocol's writing half by its methods (``pause_writing``,
    ``resume_writing``), not by subclassing ``asyncio.Protocol``: compiled, a
    class with a Python base keeps its attributes in a ``__dict__`` (a dict
    lookup per ``self.x``); without one it is a native class.
    """

    def __init__(self, door: FrontDoor) -> None:
        self.door = door
        self.loop = door.loop
        self.transport: asyncio.Transport | None = None
        self._state = IDLE
        self._fresh = True  # no request yet: the first must arrive within header_timeout_s
        # The clocks, as the moments they run out (NEVER when stopped). _deadline is never later
        # than the earliest: a clock that starts lowers it at once; one that stops or moves later
        # leaves it early, and the tick that finds nothing due works it out again.
        self._state_due = door.loop.time() + door.header_timeout  # head or keep-alive clock
        self._body_due = NEVER  # a body reader waits for bytes (body_timeout_s)
        self._write_due = NEVER  # the client stopped reading its answer (body_timeout_s)
        self._deadline = self._state_due
        self._drained: asyncio.Future[None] | None = None
        self._pauses = 0  # FOR_BODY | FOR_QUEUE
        self._reading_paused = False  # what the transport was last told

    @property
    def closed(self) -> bool:
        """Closed or cut: nothing more is read or written."""
        return self._state == CLOSED

    @property
    def state(self) -> str:
        """The connection's state by name: idle, head, body, answering, stopped or closed."""
        return _STATES[self._state]

    # -- writing --------------------------------------------------------------

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self.loop.create_future()
            due = self._write_due = self.loop.time() + self.door.body_timeout
            if due < self._deadline:
                self._deadline = due

    def resume_writing(self) -> None:
        self._write_due = NEVER
        self._wake_writer()

    def _wake_writer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def write(self, data: bytes) -> None:
        if self._state != CLOSED and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._state == CLOSED:
            raise ClientGone()
        if self._drained is not None:
            await self._drained
            if self._state == CLOSED:
                raise ClientGone()

    def close(self) -> None:
        """Close once what was written is out (the write clock still bounds that)."""
        if self._state != CLOSED and self.transport is not None:
            self._state, self._state_due = CLOSED, NEVER
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection: the client must see a broken answer, never a short one."""
        if self.transport is not None:
            self._state, self._state_due = CLOSED, NEVER
            self.transport.abort()

    # -- flow control ---------------------------------------------------------

    def pause_body(self) -> None:
        self._pause(FOR_BODY)

    def resume_body(self) -> None:
        self._resume(FOR_BODY)

    def _pause(self, reason: int) -> None:
        self._pauses |= reason
        self._flow()

    def _resume(self, reason: int) -> None:
        if self._pauses & reason:
            self._pauses &= ~reason
            self._flow()

    def _flow(self) -> None:
        paused = self._pauses != 0
        if paused != self._reading_paused and self.transport is not None and self._state != CLOSED:
            self._reading_paused = paused
            if paused:
                self.transport.pause_reading()
                if self._state == HEAD:  # the gate holds the head back, not the client
                    self._state_due = NEVER
            else:
                self.transport.resume_reading()
                if self._state == HEAD:  # the client may send again: its head clock restarts
                    self._clock(self.door.header_timeout)

    # -- clocks -----------------------------------------------------------------

    def _clock(self, limit: float) -> None:
        """Start the state's own clock (head or keep-alive): it runs out ``limit`` s from now."""
        due = self._state_due = self.loop.time() + limit
        if due < self._deadline:
            self._deadline = due

    def _idle(self) -> None:
        """Nothing asked and nothing owed: the keep-alive clock starts now."""
        self._state = IDLE
        door = self.door
        self._clock(door.header_timeout if self._fresh else door.keepalive_timeout)

    def body_waiting(self, waiting: bool) -> None:
        """A body reader starts (or, given bytes, goes on) waiting, or stops: body_timeout_s.

        Called per body chunk: a store and a comparison (a due time moving later leaves the
        deadline early, which the next tick corrects).
        """
        if waiting:
            due = self._body_due = self.loop.time() + self.door.body_timeout
            if due < self._deadline:
                self._deadline = due
        else:
            self._body_due = NEVER

    def tick(self, now: float) -> None:
        """Once a second: one comparison; past the deadline, act on each clock that ran out."""
        if now <= self._deadline:
            return
        if now > self._state_due:
            if self._state == HEAD:
                self._head_late()
            else:  # idle (or stopped) with nothing owed: nothing was asked, no answer is owed
                self.close()
        if now > self._body_due:
            self._body_late()
        if now > self._write_due:
            self.abort()  # the client stopped reading its answer
        self._deadline = min(self._state_due, self._body_due, self._write_due)

    def _head_late(self) -> None:
        """The head clock ran out mid-head: answered by whoever owns refusals (the subclass)."""
        raise NotImplementedError

    def _body_late(self) -> None:
        """A body reader waited past body_timeout_s: failed by whoever owns the requests."""
        raise NotImplementedError
