"""The acceptance lookup: ask Partner Center whether a customer's acceptance counts (R4).

Usable on its own (``gate audit`` calls it for each customer of a partner)
as well as by ``gate.acceptance.store``, which adds the cache, single flight,
the shared tier and the per-partner ``Throttle`` around it.

- ``LookupRules`` (``compile_rules(policy)``, once per config): the agreement
  types that count, ``accepted_since`` (or None), whether the customer's own
  acceptance (the direct status) counts, and the ``agreementType`` query.
- ``judge(agreements_doc, direct_doc, rules) -> Finding``: pure. The
  agreements document as the upstream answered it (``{"items": [...]}``; a
  404 is judged as ``{"items": []}``), and the direct-status document
  (``{"isSigned": bool}``; a 404 as ``{"isSigned": false}``) or None when it
  was not asked. Keys are compared case-insensitively.
- ``look_up(pool, prefix, customer, authorization, rules, timeout_s,
  correlation=None) -> Finding``: GET ``/v1/customers/{c}/agreements?agreementType=*``
  (the one type when ``policy.agreement_types`` names one), and, with
  ``direct_acceptance``, only when the agreements do not confirm, GET
  ``/v1/customers/{c}/directSignedMicrosoftCustomerAgreementStatus``; both
  with ``authorization`` and within ``timeout_s`` start to end.
- ``Finding``: ``state`` (ACCEPTED / NOT_ACCEPTED / UNKNOWN), ``source``
  (``agreement`` | ``direct`` | ``none``), ``agreement_type`` and
  ``date_agreed`` (the newest agreement that counts, else the newest one
  seen; "" when none), ``reason`` ("" when confirmed, ``no_agreement``,
  ``type_not_counted``, ``before_accepted_since``, ``lookup_error``), and
  for the caller: ``denied`` (a 401/403 answer to relay as it came),
  ``throttled`` (the upstream answered 429) with ``retry_after`` (the
  seconds its Retry-After asked, None when it said nothing readable). The
  caller holds its ``Throttle`` for that partner: ``look_up`` keeps no state.

An agreement counts when its ``type`` is one of the rules' types and, with
``accepted_since``, its ``dateAgreed`` (RFC 3339; a time without a zone is
read as UTC) is not before it; an unreadable date then does not count. The
direct status is a Customer Agreement: it counts only when
``MicrosoftCustomerAgreement`` is among the types; it carries no date.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gate.acceptance.throttle import asked_wait
from gate.config import MCA_TYPE, PolicySettings
from gate.core import body
from gate.core.policy import State
from gate.errors import GateError
from gate.http.upstream import Fetched, UpstreamPool, fetch

__all__ = [
    "DIRECT_PATH",
    "Finding",
    "LookupRules",
    "compile_rules",
    "judge",
    "look_up",
    "parse_date",
    "request_headers",
]

DIRECT_PATH = "directSignedMicrosoftCustomerAgreementStatus"


@dataclass(frozen=True, slots=True)
class LookupRules:
    """What counts as acceptance (R4), compiled once from ``[policy]``."""

    types: frozenset[str]  # lowercased agreement types that count
    accepted_since: datetime | None
    direct: bool  # the direct status is asked (direct_acceptance and the MCA counts)
    query: str  # the agreementType value asked for: "*" or the one type

    @property
    def any_agreement(self) -> bool:
        """Every agreement counts, whatever its type or date (the seed's rule).

        Only then does Partner Center's 600061 "an agreement already exists" prove
        acceptance: under a narrower policy the existing one may not count.
        """
        return self.accepted_since is None and self.types >= _BOTH_TYPES


@dataclass(frozen=True, slots=True)
class Finding:
    """What one lookup found for one customer."""

    state: State
    source: str = "none"  # agreement | direct | none
    agreement_type: str = ""
    date_agreed: str = ""
    reason: str = ""  # "" when confirmed, no_agreement, type_not_counted, ...
    denied: Fetched | None = None
    throttled: bool = False
    retry_after: float | None = None


_ERROR = Finding(State.UNKNOWN, reason="lookup_error")


_BOTH_TYPES = frozenset(("microsoftcloudagreement", "microsoftcustomeragreement"))


def compile_rules(policy: PolicySettings) -> LookupRules:
    types = tuple(policy.agreement_types)
    return LookupRules(
        types=frozenset(kind.lower() for kind in types),
        accepted_since=policy.accepted_since,
        direct=policy.direct_acceptance and MCA_TYPE in types,
        query=types[0] if len(types) == 1 else "*",
    )


def parse_date(value: Any) -> datetime | None:
    """An agreement's ``dateAgreed`` as an aware time (no zone: UTC), None when unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _folded(doc: Any) -> Any:
    return {str(k).lower(): v for k, v in doc.items()} if isinstance(doc, dict) else doc


def _newest(items: list[tuple[str, str, datetime | None]]) -> tuple[str, str]:
    if not items:
        return "", ""
    floor = datetime.min.replace(tzinfo=UTC)
    kind, date, _ = max(items, key=lambda item: item[2] or floor)
    return kind, date


def judge(agreements_doc: Any, direct_doc: Any, rules: LookupRules) -> Finding:
    """R4 over the upstream's answers (pure); UNKNOWN when a document is not what it should be."""
    doc = _folded(agreements_doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return _ERROR
    seen: list[tuple[str, str, datetime | None]] = []
    for raw in doc["items"]:
        item = _folded(raw)
        kind = item.get("type", item.get("agreementtype")) if isinstance(item, dict) else None
        if isinstance(kind, str):
            date = item.get("dateagreed")
            seen.append((kind, date if isinstance(date, str) else "", parse_date(date)))
    typed = [item for item in seen if item[0].lower() in rules.types]
    since = rules.accepted_since
    counted = [i for i in typed if since is None or (i[2] is not None and i[2] >= since)]
    if counted:
        return Finding(State.ACCEPTED, "agreement", *_newest(counted))
    kind, date = _newest(typed or seen)
    reason = "before_accepted_since" if typed else "type_not_counted" if seen else "no_agreement"
    if direct_doc is not None:
        signed = _folded(direct_doc)
        if not isinstance(signed, dict) or not isinstance(signed.get("issigned"), bool):
            return Finding(State.UNKNOWN, "none", kind, date, "lookup_error")
        if signed["issigned"]:
            return Finding(State.ACCEPTED, "direct", MCA_TYPE, "")
    return Finding(State.NOT_ACCEPTED, "none", kind, date, reason)


def request_headers(authorization: str, correlation: str | None = None) -> dict[str, str]:
    """The headers of a call the gate makes to the upstream on a caller's behalf."""
    headers = {"Authorization": authorization, "Accept": "application/json"}
    if correlation:
        headers["MS-CorrelationId"] = correlation
    return headers


async def look_up(
    pool: UpstreamPool,
    prefix: str,
    customer: str,
    authorization: str,
    rules: LookupRules,
    timeout_s: float,
    correlation: str | None = None,
    *,
    wall: Callable[[], float] = time.time,
) -> Finding:
    """Ask the upstream (agreements, then the direct status when it may decide) and judge."""
    headers = request_headers(authorization, correlation)
    base = f"{prefix}/v1/customers/{customer}"
    try:
        async with asyncio.timeout(timeout_s):
            fetched = await fetch(pool, f"{base}/agreements?agreementType={rules.query}", headers,
                                  timeout_s)  # fmt: skip
            agreements = _document(fetched, {"items": []}, wall)
            if isinstance(agreements, Finding):
                return agreements
            first = judge(agreements, None, rules)
            if first.state is not State.NOT_ACCEPTED or not rules.direct:
                return first
            fetched = await fetch(pool, f"{base}/{DIRECT_PATH}", headers, timeout_s)
            direct = _document(fetched, {"isSigned": False}, wall)
            if isinstance(direct, Finding):
                return direct
            return judge(agreements, direct, rules)
    except (GateError, TimeoutError):
        return _ERROR


def _document(fetched: Fetched, absent: Any, wall: Callable[[], float]) -> Any:
    """The answer's document (``absent`` for a 404), or the Finding that ends the lookup."""
    status = fetched.status
    if status in (401, 403):
        return Finding(State.UNKNOWN, reason="lookup_error", denied=fetched)
    if status == 429:
        asked = asked_wait(fetched.headers, wall())
        return Finding(State.UNKNOWN, reason="lookup_error", throttled=True, retry_after=asked)
    if status == 404:
        return absent
    if status != 200:
        return _ERROR
    try:
        doc = body.parse(fetched.body)
    except GateError:  # a repeated key: the answer cannot be trusted either way
        return _ERROR
    return _ERROR if doc is body.NOT_JSON else doc
