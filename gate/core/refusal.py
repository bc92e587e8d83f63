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
    why: str = "",
) -> GateError:
    """The error that names the customer, the partner, and the call that resolves it.

    ``retry_after_s``: how long the upstream's throttling still holds lookups
    back; the 503's Retry-After is that (rounded up) when it is longer than
    ``acceptance.retry_after_s``.
    ``why``: the lookup's reason the acceptance does not count (``no_agreement``,
    ``type_not_counted``, ``before_accepted_since``), named in the refusal.
    Like Partner Center's own 13605, the refusal names both ways out: the
    partner's confirmation (the attestation flow, or POST .../agreements) and
    the customer's own acceptance in the Microsoft 365 admin center.
    """
    if decision.reason is Reason.LOOKUP_ERROR:
        configured = runtime.settings.acceptance.retry_after_s
        retry_after = str(max(configured, math.ceil(retry_after_s), 1))
        return AcceptanceStatusUnavailable(
            "The gate could not confirm the customer's acceptance of the Microsoft "
            "agreement right now, and policy holds gated calls until it can. Retry later.",
            [{"customer": caller.customer, "partner": caller.partner}],
            headers={"Retry-After": retry_after},
        )
    resolve = f"POST /v1/customers/{caller.customer}/agreements"
    rules = runtime.lookup_rules
    wanted = " or ".join(sorted(_NAMES[kind] for kind in rules.types))
    since = rules.accepted_since
    dated = f" dated {since.isoformat().replace('+00:00', 'Z')} or later" if since else ""
    because = f" ({_WHY[why]})" if why in _WHY else ""
    return CustomerAcceptanceRequired(
        f"Customer {caller.customer} has no confirmed acceptance of the {wanted}{dated} for "
        f"partner {caller.partner}{because}, which a {transaction.kind} requires. Resolve it "
        f"either way, then retry: the partner confirms the customer's acceptance (the "
        f"attestation flow, POST /v1/attestations/enhanced then {resolve} with its "
        f"attestationId, or {resolve}), or the customer accepts the Microsoft Customer "
        f"Agreement in the Microsoft 365 admin center.",
        [
            {
                "customer": caller.customer,
                "partner": caller.partner,
                "transaction": transaction.kind,
                "rule": transaction.rule,
                "reason": why or "not_accepted",
                "resolve": resolve,
                "resolveByAttestation": "POST /v1/attestations/enhanced",
                "resolveByCustomer": "Microsoft 365 admin center",
            }
        ],
    )


_NAMES = {
    "microsoftcloudagreement": "Microsoft Cloud Agreement",
    "microsoftcustomeragreement": "Microsoft Customer Agreement",
}
_WHY = {
    "no_agreement": "no agreement on record",
    "type_not_counted": "its agreement is of a type that does not count",
    "before_accepted_since": "its agreement is dated before the cut-off",
}
