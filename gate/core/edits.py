"""Subscription edits: which fields a PATCH changes, and which transaction kind that makes.

``policy.subscription_edits`` names the fields that gate a subscription PATCH
(DESIGN §1.2): ``quantity`` makes it a ``seat_change``; ``termDuration``,
``billingCycle`` and ``scheduledNextTermInstructions`` a ``term_change``. A
field counts as changed when the body names it with another value than the
current subscription has (strings compared case-insensitively);
``scheduledNextTermInstructions`` counts whenever it is not null. Documents
come from ``gate.core.body`` with lowercased keys.
"""

from __future__ import annotations

from typing import Any

from gate.core import body

__all__ = ["FACTS_PREFIX", "changed", "facts", "kind_of", "named"]

_NEXT_TERM = "scheduledNextTermInstructions"
FACTS_PREFIX = "fields:"  # the decision log's body facts: fields:quantity+termDuration


def named(doc: Any, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The edit fields the body names (a body that is not an object names every one)."""
    if not isinstance(doc, dict):
        return fields
    return tuple(
        field
        for field in fields
        if field.lower() in doc and (field != _NEXT_TERM or doc[field.lower()] is not None)
    )


def changed(doc: Any, current: Any, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The named fields whose value differs from ``current`` (unreadable current: all)."""
    names = named(doc, fields)
    if not isinstance(doc, dict) or not isinstance(current, dict):
        return names
    return tuple(field for field in names if _differs(field, doc, current))


def _differs(field: str, doc: dict[str, Any], current: dict[str, Any]) -> bool:
    if field == _NEXT_TERM:
        return True
    if field == "quantity":
        wanted, have = body.requested_quantity(doc), body.requested_quantity(current)
        return not isinstance(wanted, int) or not isinstance(have, int) or wanted != have
    wanted, have = doc.get(field.lower()), current.get(field.lower())
    if isinstance(wanted, str) and isinstance(have, str):
        return wanted.strip().lower() != have.strip().lower()
    return bool(wanted != have)


def kind_of(fields: tuple[str, ...]) -> str | None:
    """``seat_change`` when the quantity is among them, ``term_change`` for others, else None."""
    if "quantity" in fields:
        return "seat_change"
    return "term_change" if fields else None


def facts(doc: Any, fields: tuple[str, ...]) -> str:
    """The log's body facts for an edit: ``fields:`` and the named fields joined with ``+``."""
    return FACTS_PREFIX + "+".join(named(doc, fields))
