"""Judge: a gated call's verdict as a pure function of the facts gathered about it.

The live gate gathers the facts from the call, its body, the acceptance store
and (for an unconfirmed subscription edit) the current subscription
(``gate.core.decide``); ``gate replay`` gathers them from a decision log line
(``gate.replay.redecide``). Both ask ``judge``, so a replay reaches what the
live gate would. A fact not gathered yet is a ``Needs`` answer, never a guess:
the live gate then looks it up and asks again; a replay says ``needs-lookup``.

Nothing here reads a clock, a socket or the store: the time is a fact too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from gate.core.policy import Decision, Reason, State, Verdict

if TYPE_CHECKING:  # the runtime compiles gate.acceptance.lookup's rules
    from gate.runtime import Runtime

__all__ = ["NEEDS_ACCEPTANCE", "NEEDS_COMPARISON", "Facts", "Needs", "exemptable", "judge"]


class Facts:
    """What is known about a gated call from a known partner whose body keeps it gated.

    A plain class (native when compiled): one is made per gated call.
    """

    __slots__ = ("acceptance", "at", "customer", "denied", "partner", "same", "when")

    def __init__(
        self,
        partner: str,
        customer: str,
        when: str,  # the matched rule's `when` (changes_quantity: a subscription edit)
        at: float,  # when it was called, epoch seconds (enforce_from)
        acceptance: State | None = None,  # what the store answered; None: not asked yet
        denied: bool = False,  # the upstream refused the caller's own credentials on the lookup
        same: bool | None = None,  # an edit compared with the current subscription changed
        # nothing (True), changed something (False); None: not compared
    ) -> None:
        self.partner = partner
        self.customer = customer
        self.when = when
        self.at = at
        self.acceptance = acceptance
        self.denied = denied
        self.same = same


class Needs(NamedTuple):
    """A fact the judge cannot do without: ``acceptance`` or ``quantity`` (a comparison)."""

    fact: str


NEEDS_ACCEPTANCE = Needs("acceptance")
NEEDS_COMPARISON = Needs("quantity")
_UPSTREAM_DENIED = Decision(Verdict.BLOCKED, Reason.UPSTREAM_DENIED)


def exemptable(runtime: Runtime, kind: str) -> bool:
    """Exemptions apply: a confirmation is checked (R6) even under mode off, except on a
    national cloud, which does not support confirmation at all."""
    return kind != "confirmation" or runtime.policy.national_cloud


def judge(facts: Facts, runtime: Runtime) -> Decision | Needs | None:
    """The verdict, a fact still needed, or None: not gated after all.

    - nothing asked yet: ``NEEDS_ACCEPTANCE``;
    - the upstream denied the lookup: the policy with ``not_accepted``, and a
      block is ``upstream_denied`` (the caller gets the upstream's own answer);
    - an unconfirmed subscription edit under ``seat_changes``: compared with
      the current subscription first (``NEEDS_COMPARISON``); unchanged: None;
    - else the policy over the state at ``at``.
    """
    policy = runtime.policy
    if facts.denied:
        decision = policy.decide(facts.partner, facts.customer, State.NOT_ACCEPTED, facts.at)
        return _UPSTREAM_DENIED if decision.verdict is Verdict.BLOCKED else decision
    state = facts.acceptance
    if state is None:
        return NEEDS_ACCEPTANCE
    if (
        state is not State.ACCEPTED
        and facts.when == "changes_quantity"
        and runtime.seat_changes_only
    ):
        if facts.same is None:
            return NEEDS_COMPARISON
        if facts.same:
            return None
    return policy.decide(facts.partner, facts.customer, state, facts.at)
