"""Record: a confirmation that the upstream accepts marks the pair accepted at once (R5).

Partners may confirm as often as they like; each confirmation is checked
(R6), forwarded, and a 2xx, or Partner Center's 4xx ``600061``
PartnerConfirmedAgreementAlreadyExists, proves acceptance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gate.core import body, confirmation
from gate.core.policy import Verdict
from gate.errors import GateError, InvalidAcceptance
from gate.http.forward import forward
from gate.keys import METRICS, STORE, UPSTREAM

__all__ = ["check", "forward_and_record"]

_ALREADY_CONFIRMED = 600061


def check(doc: Any) -> None:
    """R6, before anything leaves the gate: InvalidAcceptance lists each bad field."""
    problems = confirmation.problems(doc, datetime.now(UTC))
    if problems:
        raise InvalidAcceptance(
            "The acceptance confirmation is incomplete or malformed; it was not forwarded.",
            problems,
        )


async def forward_and_record(
    request: web.Request, customer: str, partner: str, raw: bytes, target: str
) -> web.StreamResponse:
    """Forward a valid confirmation; a success (or 'already exists') marks the pair accepted."""
    response = await forward(
        request, request.app[UPSTREAM], target, request.app[METRICS],
        body=raw, decision=Verdict.ALLOWED.value, inspect=True,
    )  # fmt: skip
    if _proves_acceptance(response):
        request.app[STORE].record(partner, customer)
    return response


def _proves_acceptance(response: web.StreamResponse) -> bool:
    if 200 <= response.status < 300:
        return True
    if not 400 <= response.status < 500 or not isinstance(response, web.Response):
        return False
    try:
        doc = body.parse(response.body if isinstance(response.body, bytes) else b"")
    except GateError:
        return False
    code = doc.get("code") if isinstance(doc, dict) else None
    return str(code) == str(_ALREADY_CONFIRMED)
