"""The refusal a blocked verdict becomes: Partner Center's 13605, or the fail-closed 503."""

from __future__ import annotations

import math

from gate.core.classify import Transaction
from gate.core.identity import Caller
from gate.core.policy import Decision, Reason
from gate.errors import AcceptanceStatusUnavailable, CustomerAcceptanceRequired, GateError
from gate.runtime import Runtime

__all__ = ["refusal"]


def refusal(
    runtime: Runtime,
    decision: Decision,
    transaction: Transaction,
    caller: Caller,
    retry_after_s: float = 0.0,
) -> GateError:
    """The error that names the customer, the partner, and the call that resolves it.

    ``retry_after_s``: how long the upstream's throttling still holds lookups
    back; the 503's Retry-After is that (rounded up) when it is longer than
    ``acceptance.retry_after_s``.
    """
    if decision.reason is Reason.LOOKUP_ERROR:
        configured = runtime.settings.acceptance.retry_after_s
        retry_after = str(max(configured, math.ceil(retry_after_s), 1))
        return AcceptanceStatusUnavailable(
            "The gate could not confirm the customer's acceptance of the Microsoft Cloud "
            "Agreement right now, and policy holds gated calls until it can. Retry later.",
            [{"customer": caller.customer, "partner": caller.partner}],
            headers={"Retry-After": retry_after},
        )
    resolve = f"POST /v1/customers/{caller.customer}/agreements"
    return CustomerAcceptanceRequired(
        f"Customer {caller.customer} has no confirmed acceptance of the Microsoft Cloud "
        f"Agreement for partner {caller.partner}, which a {transaction.kind} requires. "
        f"Confirm it with {resolve}, then retry.",
        [
            {
                "customer": caller.customer,
                "partner": caller.partner,
                "transaction": transaction.kind,
                "rule": transaction.rule,
                "resolve": resolve,
            }
        ],
    )
