"""What one gated call's decision log line will say, filled in as the call is decided.

A ``Trace`` rides along with a gated call: the core (``gate.core.decide``)
fills it in as it identifies and decides the call; the front doors only
mark how it ended, through its methods (``refused``, ``client_gone``).
``gate.decision_log.finish`` writes its line and counts its verdict once,
when the caller's answer is known. Nothing in it is personal data: names,
emails, phone numbers and tokens never reach a trace.
"""

from __future__ import annotations

from gate.core.classify import Transaction
from gate.core.policy import Verdict

__all__ = ["Trace"]


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

    def client_gone(self) -> None:
        """The caller left before its answer: blocked (never sent upstream), logged as 499."""
        self.verdict, self.reason = Verdict.BLOCKED, "client_gone"
