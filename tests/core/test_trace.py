"""gate.core.trace: what a gated call's decision line will say; how a front door marks its end."""

from __future__ import annotations

import time

import pytest

from gate.core.classify import Transaction
from gate.core.policy import Verdict
from gate.core.trace import Trace
from tests.support import (
    CUSTOMER,
)

ORDER = Transaction(kind="new_purchase", rule="create-order", when="always", customer=CUSTOMER)


def trace(**fields: object) -> Trace:
    made = Trace(ORDER, "POST", f"/v1/customers/{CUSTOMER}/orders", "corr-1", time.perf_counter())
    for name, value in fields.items():
        setattr(made, name, value)
    return made


# -- refused ---------------------------------------------------------------------


def test_a_refusal_with_no_verdict_yet_is_a_block_named_by_the_error() -> None:
    """An error before any verdict (a bad body, no partner) blocks the gated call."""
    marked = trace()
    assert marked.refused("AmbiguousBody") == Verdict.BLOCKED
    assert (marked.verdict, marked.reason) == (Verdict.BLOCKED, "AmbiguousBody")


def test_a_block_keeps_the_reason_it_already_had() -> None:
    """A 13605 refusal stays ``not_accepted``: the errorName does not overwrite the reason."""
    marked = trace(verdict=Verdict.BLOCKED, reason="not_accepted")
    assert marked.refused("CustomerAcceptanceRequired") == Verdict.BLOCKED
    assert marked.reason == "not_accepted"


@pytest.mark.parametrize("verdict", [Verdict.ALLOWED, Verdict.WOULD_BLOCK, Verdict.EXEMPT])
def test_a_verdict_that_let_the_call_through_stands(verdict: Verdict) -> None:
    """An upstream failure after an allowed call (502, 504) does not turn it into a block."""
    marked = trace(verdict=verdict, reason="accepted")
    assert marked.refused("UpstreamTimeout") == verdict
    assert (marked.verdict, marked.reason) == (verdict, "accepted")


def test_a_caller_that_left_is_blocked_as_client_gone() -> None:
    """A gated call whose caller left is never sent upstream: blocked, reason client_gone."""
    gone = trace(verdict=Verdict.ALLOWED, reason="accepted")
    gone.client_gone()
    assert (gone.verdict, gone.reason) == (Verdict.BLOCKED, "client_gone")
