"""Record: a confirmation that the upstream accepts marks the pair accepted at once (R5).

Partners may confirm as often as they like; each confirmation is checked
(R6) before it leaves the gate, forwarded, and a 2xx, or Partner Center's
4xx ``600061`` PartnerConfirmedAgreementAlreadyExists, proves acceptance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gate.acceptance.lookup import LookupRules, parse_date
from gate.core import body, confirmation
from gate.errors import GateError, InvalidAcceptance

__all__ = ["check", "counts", "proves_acceptance"]

_ALREADY_CONFIRMED = 600061


def check(doc: Any) -> None:
    """R6, before anything leaves the gate: InvalidAcceptance lists each bad field."""
    problems = confirmation.problems(doc, datetime.now(UTC))
    if problems:
        raise InvalidAcceptance(
            "The acceptance confirmation is incomplete or malformed; it was not forwarded.",
            problems,
        )


def counts(doc: Any, rules: LookupRules, now: datetime) -> bool:
    """Whether what a (valid) confirmation confirms counts under R4, so it may be recorded.

    An attestation's agreement is a Customer Agreement dated the day it is
    made; otherwise ``type`` (absent: the Cloud Agreement) and ``dateAgreed``.
    """
    if confirmation.attestation_id(doc) is not None:
        kind, agreed = "microsoftcustomeragreement", now
    else:
        kind = str(doc.get("type") or confirmation.MCA_TYPE).lower()
        agreed = parse_date(doc.get("dateagreed")) or now
    if kind not in rules.types:
        return False
    return rules.accepted_since is None or agreed >= rules.accepted_since


def proves_acceptance(status: int, answer: bytes | None) -> bool:
    """Whether the upstream's answer to a confirmation shows the pair accepted.

    ``answer`` is the body when the front door could read it whole (None: too
    large, or not read), which only a 4xx needs.
    """
    if 200 <= status < 300:
        return True
    if not 400 <= status < 500 or answer is None:
        return False
    try:
        doc = body.parse(answer)
    except GateError:
        return False
    code = doc.get("code") if isinstance(doc, dict) else None
    return str(code) == str(_ALREADY_CONFIRMED)
