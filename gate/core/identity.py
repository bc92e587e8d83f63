"""Identify: who is calling (partner) and about whom (customer, reseller).

The partner is the ``tid`` claim of the bearer token, decoded but not
verified (the upstream verifies the token; the gate only needs the key), or
a header set by an authenticating hop in front of the gate. Anything that
does not name exactly one partner names none.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["Caller", "partner_from_header", "partner_from_token"]

_TENANT = re.compile(r"[A-Za-z0-9._-]{1,128}")


class Caller:
    """Who calls about whom: one per gated call (a native class when compiled)."""

    __slots__ = ("customer", "partner", "resellers")

    def __init__(self, partner: str, customer: str, resellers: tuple[str, ...] = ()) -> None:
        self.partner = partner
        self.customer = customer
        self.resellers = resellers  # indirect resellers the body names (partnerIdOnRecord)


def _tenant(value: Any) -> str | None:
    if isinstance(value, str) and _TENANT.fullmatch(value):
        return value.lower()
    return None


def partner_from_header(values: Sequence[str]) -> str | None:
    """The partner a trusted hop named, when it named exactly one."""
    return _tenant(values[0].strip()) if len(values) == 1 else None


def partner_from_token(authorizations: Sequence[str]) -> str | None:
    """The single string ``tid`` claim of the one bearer token, or None."""
    if len(authorizations) != 1:
        return None
    scheme, _, token = authorizations[0].strip().partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        # Objects decode as tuples of pairs (JSON arrays are lists): a repeated claim stays
        # visible, and only an object at the top is a claims set.
        claims = json.loads(raw, object_pairs_hook=tuple)
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(claims, tuple):
        return None
    tids = [value for key, value in claims if key == "tid"]
    return _tenant(tids[0]) if len(tids) == 1 else None
