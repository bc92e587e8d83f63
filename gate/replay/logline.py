"""One line of the gate's JSON decision log, read back as a ``LoggedCall``.

A log holds more than decisions (start-up, draining, library errors), and a
file handed to ``gate replay`` may hold anything: foreign JSON, garbage, a
line cut short by a rotation, bytes that are not UTF-8. Nothing here raises:
every line is either a ``LoggedCall`` or a ``Skip`` saying why it was left
out. Fields the replay can live without (partner, acceptance, body facts,
ids) may be absent or null; the ones that name the call and its outcome
(method, path, transaction, rule, decision, timestamp) must be there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["ACCEPTANCE_STATES", "FACTS", "LoggedCall", "Skip", "read_line"]

VERDICTS = frozenset({"allowed", "blocked", "would-block", "exempt"})
ACCEPTANCE_STATES = frozenset({"accepted", "not_accepted", "unknown", "denied"})
FACTS = frozenset({"cancel_only", "adds_line_items", "no_quantity", "quantity", "same_quantity"})


class Skip(StrEnum):
    """Why a line is not replayed."""

    NOT_JSON = "not_json"  # garbage, truncated, not UTF-8, not a JSON object
    OTHER = "other"  # JSON, but not a decision line (the gate's other events, foreign JSON)
    INCOMPLETE = "incomplete"  # a decision line lacking a field the replay needs


@dataclass(frozen=True, slots=True)
class LoggedCall:
    """What a decision (or not_gated) line says about one gated call."""

    method: str
    path: str
    transaction: str
    rule: str
    decision: str | None  # None: the rule matched but the body made the call ungated
    reason: str
    partner: str | None
    customer: str | None
    acceptance: str | None  # None: no lookup was made
    facts: str | None  # the body facts the logging rule's `when` looked at
    timestamp: str
    at: float  # the timestamp as seconds since the epoch
    correlation_id: str | None


def _text(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


def _known(doc: dict[str, Any], key: str, allowed: frozenset[str]) -> str | None:
    value = _text(doc, key)
    return value if value in allowed else None


_FIELD_FACTS = re.compile(r"(same_)?fields:[A-Za-z+]{0,120}")  # a gate listing edit fields


def _facts(doc: dict[str, Any]) -> str | None:
    value = _text(doc, "body")
    return value if value in FACTS or (value and _FIELD_FACTS.fullmatch(value)) else None


def _moment(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def read_line(raw: bytes) -> LoggedCall | Skip:
    """The call a log line records, or why the line is skipped."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Skip.NOT_JSON
    if not isinstance(doc, dict):
        return Skip.NOT_JSON
    event = doc.get("event")
    if event not in ("decision", "not_gated"):
        return Skip.OTHER
    decision = doc.get("decision")
    method, path = _text(doc, "method"), _text(doc, "path")
    transaction, rule = _text(doc, "transaction"), _text(doc, "rule")
    timestamp = _text(doc, "timestamp")
    at = _moment(timestamp)
    wanted = decision in VERDICTS if event == "decision" else decision is None
    if not method or not path or not transaction or not rule or not timestamp:
        return Skip.INCOMPLETE
    if at is None or not wanted:
        return Skip.INCOMPLETE
    return LoggedCall(
        method=method,
        path=path,
        transaction=transaction,
        rule=rule,
        decision=decision,
        reason=_text(doc, "reason") or "",
        partner=(_text(doc, "partner") or "").lower() or None,
        customer=_text(doc, "customer"),
        acceptance=_known(doc, "acceptance", ACCEPTANCE_STATES),
        facts=_facts(doc),
        timestamp=timestamp,
        at=at,
        correlation_id=_text(doc, "correlation_id"),
    )
