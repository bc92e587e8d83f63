"""Record: a confirmation that the upstream accepts marks the pair accepted at once (R5).

Partners may confirm as often as they like; each confirmation is checked
(R6) before it leaves the gate, forwarded, and a 2xx, or Partner Center's
4xx ``600061`` PartnerConfirmedAgreementAlreadyExists, proves acceptance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gate.core import body, confirmation
from gate.errors import GateError, InvalidAcceptance

__all__ = ["check", "proves_acceptance"]

_ALREADY_CONFIRMED = 600061


def check(doc: Any) -> None:
    """R6, before anything leaves the gate: InvalidAcceptance lists each bad field."""
    problems = confirmation.problems(doc, datetime.now(UTC))
    if problems:
        raise InvalidAcceptance(
            "The acceptance confirmation is incomplete or malformed; it was not forwarded.",
            problems,
        )


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
