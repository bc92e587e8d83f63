"""Every customer of a partner: Partner Center's customers list, page by page.

GET ``/v1/customers?size=N`` answers a page (``items``) and, while more
follow, ``links.next``: a ``uri`` (relative to the API root, e.g.
``/customers?size=100&seekOperation=Next``) and ``headers`` holding the
``MS-ContinuationToken`` to send with it. ``walk`` follows it until a page
has none, yielding each customer once (a list that changes between pages
can show a customer again: it is skipped), one page in memory at a time.

Only the path and query of a next link are followed, on the configured
upstream: the token is never sent to another host. A page answered 429 is
asked again after its ``Retry-After`` (the partner's ``Throttle`` is held,
so the lookups wait too); 401/403, an unreachable upstream, or a list that
keeps failing end the walk with ``ListError``, whose message never holds the
token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gate.acceptance.throttle import Throttle, asked_wait
from gate.errors import GateError, UpstreamUnavailable
from gate.http.upstream import Fetched, UpstreamPool, fetch

__all__ = ["PAGE_SIZE", "Customer", "ListError", "Listing", "wait_out", "walk"]

PAGE_SIZE = 100  # customers asked per page
_ATTEMPTS = 5  # a page is asked at most this often (429s and 5xx) before the walk gives up
_ERROR_WAIT_S = 1.0  # before asking a failed (not throttled) page again


@dataclass(frozen=True, slots=True)
class Customer:
    """One customer as the audit reports it: the tenant id and the company name, nothing else."""

    id: str  # lowercased
    company: str


class ListError(Exception):
    """The customers list cannot be read: the audit cannot run (exit 2)."""


@dataclass(frozen=True, slots=True)
class Listing:
    """Where and how to read the list."""

    pool: UpstreamPool
    prefix: str  # the upstream URL's own path
    authorization: str
    partner: str  # for the throttle
    timeout_s: float
    default_wait_s: float  # a 429 without a readable Retry-After holds this long


async def walk(
    listing: Listing,
    throttle: Throttle,
    *,
    page_size: int = PAGE_SIZE,
    wall: Callable[[], float] = time.time,
) -> AsyncIterator[Customer]:
    """Each customer of the partner once, in the list's order."""
    seen: set[str] = set()
    target, token = f"{listing.prefix}/v1/customers?size={page_size}", ""
    asked: set[tuple[str, str]] = set()
    while True:
        asked.add((target, token))
        doc = await _page(listing, throttle, target, token, wall)
        for item in _items(doc):
            customer = _customer(item)
            if customer is not None and customer.id not in seen:
                seen.add(customer.id)
                yield customer
        following = _next(doc, listing.prefix)
        if following is None:
            return
        if following in asked:
            raise ListError("the customers list does not advance (the same next page again)")
        target, token = following


async def wait_out(throttle: Throttle, partner: str) -> None:
    """Return once Partner Center's hold on ``partner`` is over (it may grow meanwhile)."""
    while True:
        held = throttle.remaining(partner)
        if held <= 0:
            return
        await asyncio.sleep(held)


async def _page(
    listing: Listing, throttle: Throttle, target: str, token: str, wall: Callable[[], float]
) -> Any:
    headers = {"Authorization": listing.authorization, "Accept": "application/json"}
    if token:
        headers["MS-ContinuationToken"] = token
    problem = ""
    for _ in range(_ATTEMPTS):
        await wait_out(throttle, listing.partner)
        try:
            fetched = await fetch(listing.pool, target, headers, listing.timeout_s)
        except UpstreamUnavailable as error:
            raise ListError(f"cannot reach the upstream: {error.description}") from None
        except GateError as error:  # a timeout, or an answer too large or broken
            problem = error.description
            await asyncio.sleep(_ERROR_WAIT_S)
            continue
        if fetched.status in (401, 403):
            raise ListError(
                f"the upstream refused the customers list ({fetched.status}): the token is "
                "expired or not an App+User token of the partner"
            )
        if fetched.status == 429:
            wait = asked_wait(fetched.headers, wall()) or listing.default_wait_s
            throttle.hold(listing.partner, wait)
            problem = "throttled (429)"
            continue
        doc = _json(fetched) if fetched.status == 200 else None
        if isinstance(_field(doc, "items"), list):
            return doc
        problem = f"answered {fetched.status}" if fetched.status != 200 else "not a list"
        await asyncio.sleep(_ERROR_WAIT_S)
    raise ListError(f"the customers list failed {_ATTEMPTS} times, last: {problem}")


def _json(fetched: Fetched) -> Any:
    try:
        return json.loads(fetched.body)
    except ValueError:
        return None


def _field(doc: Any, name: str) -> Any:
    """``doc[name]`` with the key compared case-insensitively (None when absent)."""
    if not isinstance(doc, dict):
        return None
    if name in doc:
        return doc[name]
    lowered = name.lower()
    return next((v for k, v in doc.items() if str(k).lower() == lowered), None)


def _items(doc: Any) -> list[Any]:
    items = _field(doc, "items")
    return items if isinstance(items, list) else []


def _customer(item: Any) -> Customer | None:
    profile = _field(item, "companyProfile")
    tenant = _field(item, "id") or _field(profile, "tenantId")
    if not isinstance(tenant, str) or not tenant.strip() or "/" in tenant:
        return None  # not a tenant id: never a row (nor a shared-tier key)
    company = _field(profile, "companyName")
    return Customer(tenant.strip().lower(), company if isinstance(company, str) else "")


def _next(doc: Any, prefix: str) -> tuple[str, str] | None:
    """(target, continuation token) of the next page, or None when this was the last."""
    link = _field(_field(doc, "links"), "next")
    uri = _field(link, "uri")
    if not isinstance(uri, str) or not uri.strip():
        return None
    parts = urlsplit(uri.strip())  # an absolute link: its path only, on our upstream
    path = parts.path if parts.path.startswith("/") else f"/{parts.path}"
    if not path.lower().startswith("/v1/"):
        path = f"/v1{path}"
    target = f"{prefix}{path}?{parts.query}" if parts.query else f"{prefix}{path}"
    token = ""
    headers = _field(link, "headers")
    for header in headers if isinstance(headers, list) else []:
        key, value = _field(header, "key"), _field(header, "value")
        if (
            isinstance(key, str)
            and key.lower() == "ms-continuationtoken"
            and isinstance(value, str)
        ):
            token = value
    token = token or _field(doc, "continuationToken") or ""
    return target, token if isinstance(token, str) else ""
