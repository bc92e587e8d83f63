"""What the decision core answers with: an Action value that a front door carries out.

The core never touches a socket. It returns one of these, and the proxy
listener (or the decision service) executes it::

    Action
    ├── Forward   send the call upstream, with X-Gate-Decision when gated;
    │             ``record`` set: a 2xx (or 600061) answer marks the pair accepted
    └── Answer    reply in the upstream's place: a refusal, or a relayed denial

``Gated`` is the half-way value between the two steps of the core: the call
matched a rule and the front door must read its body before ``decide``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from gate.core.classify import Transaction
from gate.core.identity import Caller
from gate.core.trace import Trace
from gate.errors import GateError

if TYPE_CHECKING:  # the runtime compiles gate.acceptance.lookup's rules, which forwards
    from gate.runtime import Runtime

__all__ = ["Action", "Answer", "Forward", "Gated", "Head", "answer_error"]


class Head(Protocol):
    """A request's headers as the core reads them; names are given in lowercase."""

    def getall(self, name: str) -> Sequence[str]: ...


class Forward:
    """Send the call upstream. ``body`` is the body the gate read (None: stream it on).

    A plain class (compiled, a native one), not a NamedTuple: one is made for every
    call, and a NamedTuple's constructor runs as interpreted Python.
    """

    __slots__ = ("body", "decision", "existing_counts", "record", "target", "trace")

    def __init__(
        self,
        target: str,
        decision: str | None = None,
        body: bytes | None = None,
        record: Caller | None = None,
        trace: Trace | None = None,
        # Partner Center's 600061 ("already exists") proves acceptance too: only while any
        # agreement counts (LookupRules.any_agreement), else the existing one may not.
        existing_counts: bool = True,
    ) -> None:
        self.target = target
        self.decision = decision
        self.body = body
        self.record = record
        self.trace = trace
        self.existing_counts = existing_counts

    def __repr__(self) -> str:
        return f"Forward({self.target!r}, decision={self.decision!r})"


class Answer(NamedTuple):
    """Reply in the upstream's place; header bytes go out as they are here."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    reason: str = ""
    error: str | None = None  # the gate's errorName, for the decision log
    trace: Trace | None = None
    own: bool = True  # the gate's own answer (it gets a Date), not one relayed as it came


Action = Forward | Answer


class Gated:
    """A call that matched a rule; the core decides it once its body is read.

    A plain class, not a NamedTuple: mypyc builds a NamedTuple's field types at import, and
    ``Runtime`` exists only for the type checker here (importing it would be circular).
    """

    __slots__ = ("exemptable", "runtime", "target", "trace", "transaction")

    def __init__(
        self,
        runtime: Runtime,
        transaction: Transaction,
        target: str,
        trace: Trace,
        exemptable: bool,  # exemptions apply (a confirmation is checked even under mode off)
    ) -> None:
        self.runtime = runtime
        self.transaction = transaction
        self.target = target
        self.trace = trace
        self.exemptable = exemptable


def answer_error(error: GateError, trace: Trace | None = None) -> Answer:
    """The gate's own answer for ``error``; on a gated call it carries the decision header."""
    headers = error.response_headers()
    if trace is not None and trace.gated:
        headers.setdefault("X-Gate-Decision", trace.refused(error.error_name))
    return Answer(
        error.status,
        error.body(),
        tuple((name.encode(), value.encode("latin-1")) for name, value in headers.items()),
        error=error.error_name,
        trace=trace,
    )
