"""A small Partner Center stand-in: the upstream of ``gate demo`` and of every test.

A real aiohttp server (never a mock) that keeps per-partner agreements,
orders and subscriptions in memory, records each call it receives, and has
knobs for the failures a gate must survive: a status, a delay, a broken body.
Paths are matched case-insensitively, as Partner Center's own front end does.

As Partner Center today (DESIGN §1.2):
- agreements carry a ``type`` (``MicrosoftCloudAgreement`` or
  ``MicrosoftCustomerAgreement``) and a ``dateAgreed``; GET agreements lists
  the type ``agreementType`` names, every type for ``*``, and the Cloud
  Agreement only without the parameter;
- GET ``.../directSignedMicrosoftCustomerAgreementStatus`` answers
  ``{"isSigned": bool}`` from ``Sandbox.direct_signed`` (customers who
  accepted in the Microsoft 365 admin center: per customer, any partner);
- App-only tokens are refused (403) on agreements and the direct status.
  A token is App-only when its ``idtyp`` claim is ``app`` (the claim Azure AD
  issues in app-only access tokens, which also carry ``roles`` and no
  ``scp``); ``make_token(..., app_only=True)`` makes one;
- POST ``/v1/attestations/enhanced`` (App-only or App+User) returns an
  ``attestationId``; a confirmation naming one (any key casing) records a
  Customer Agreement dated that day, and one naming an id the sandbox never
  issued is answered 400;
- subscriptions carry ``termDuration``, ``billingCycle`` and
  ``scheduledNextTermInstructions`` besides ``quantity``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

__all__ = [
    "SANDBOX",
    "CustomerList",
    "Knobs",
    "Received",
    "Sandbox",
    "create_app",
    "make_token",
]

_KEEP_BODY = 1024 * 1024


MCA = "MicrosoftCustomerAgreement"
CLOUD_AGREEMENT = "MicrosoftCloudAgreement"


def make_token(partner: str, *, app_only: bool = False, **claims: Any) -> str:
    """An unsigned JWT with a tid claim: enough for the gate, which never verifies.

    ``app_only``: an App-only token as Azure AD issues it (``idtyp: app``,
    ``roles``, no ``scp``), which the sandbox refuses on agreements and the
    direct status; otherwise an App+User one (``scp``).
    """

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    kind: dict[str, Any] = (
        {"idtyp": "app", "roles": ["PartnerCenter.Commerce"]}
        if app_only
        else {"scp": "user_impersonation"}
    )
    payload = {"tid": partner, **kind, **claims}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}.sig"


def _claims_of(authorization: str) -> dict[str, Any]:
    scheme, _, token = authorization.partition(" ")
    parts = token.split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _partner_of(authorization: str) -> str | None:
    tid = _claims_of(authorization).get("tid")
    return tid.lower() if isinstance(tid, str) else None


def _app_only(authorization: str) -> bool:
    return _claims_of(authorization).get("idtyp") == "app"


@dataclass(frozen=True, slots=True)
class Received:
    """One call as the upstream saw it (bodies over 1 MiB keep only size and hash)."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDict[str]
    body: bytes
    size: int
    sha256: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class Knobs:
    """Failure switches; None means behave like Partner Center."""

    agreements_status: int | None = None
    agreements_body: bytes | None = None
    agreements_delay_s: float = 0.0
    agreements_retry_after: str | None = None  # a Retry-After header on a forced status
    direct_status: int | None = None  # the direct status answered with this status
    throttled_partners: frozenset[str] = frozenset()  # their lookups are answered 429
    confirm_status: int | None = None
    already_exists_conflict: bool = False
    subscription_status: int | None = None
    enforce_acceptance: bool = False
    delay_s: float = 0.0


@dataclass(slots=True)
class Sandbox:
    received: list[Received] = field(default_factory=list)
    agreements: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    quantities: dict[tuple[str, str], int] = field(default_factory=dict)
    subscriptions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    direct_signed: set[str] = field(default_factory=set)  # customers, lowercased
    attestations: set[str] = field(default_factory=set)  # attestation ids issued
    knobs: Knobs = field(default_factory=Knobs)
    agreements_in_flight: int = 0  # agreements lookups being answered right now
    agreements_peak: int = 0  # the most ever answered at once
    listing: CustomerList = field(default_factory=lambda: CustomerList())  # GET /v1/customers
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def accept(
        self,
        partner: str,
        customer: str,
        kind: str = CLOUD_AGREEMENT,
        date: str = "2024-01-01T00:00:00Z",
    ) -> None:
        """The partner confirmed the customer's acceptance of ``kind`` on ``date``."""
        self.agreements.setdefault((partner.lower(), customer.lower()), []).append(
            {"type": kind, "dateAgreed": date}
        )

    def sign_directly(self, customer: str) -> None:
        """The customer accepted the Customer Agreement in the Microsoft 365 admin center."""
        self.direct_signed.add(customer.lower())

    def calls(self, method: str, path_suffix: str = "") -> list[Received]:
        return [
            r
            for r in self.received
            if r.method == method and r.path.lower().endswith(path_suffix.lower())
        ]


SANDBOX = web.AppKey("sandbox", Sandbox)
_C = r"/v1/customers/(?P<customer>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(f"{_C}/agreements"), "list_agreements"),
    ("POST", re.compile(f"{_C}/agreements"), "confirm"),
    ("GET", re.compile(f"{_C}/directsignedmicrosoftcustomeragreementstatus"), "direct_status"),
    ("POST", re.compile(r"/v1/attestations/enhanced"), "attest"),
    ("POST", re.compile(f"{_C}/orders"), "create_order"),
    ("GET", re.compile(f"{_C}/subscriptions/(?P<sub>[^/]+)"), "get_subscription"),
    ("PATCH", re.compile(f"{_C}/subscriptions/(?P<sub>[^/]+)"), "patch_subscription"),
    ("POST", re.compile(r"/sandbox/upload"), "upload"),
    ("PUT", re.compile(r"/sandbox/upload"), "upload"),
    ("GET", re.compile(r"/sandbox/bytes"), "stream_bytes"),
    ("GET", re.compile(r"/sandbox/abort"), "abort_mid_body"),
    ("GET", re.compile(r"/sandbox/status/(?P<code>\d{3})"), "status"),
]


def _route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    for want, pattern, name in _ROUTES:
        match = pattern.fullmatch(path)
        if match and want == method:
            return name, match.groupdict()
    return None


_SUBSCRIPTION: dict[str, Any] = {
    "status": "active",
    "termDuration": "P1Y",
    "billingCycle": "monthly",
    "scheduledNextTermInstructions": None,
}


def _app_only_refused() -> web.Response:
    return _error(403, 900415, "Forbidden: App+User credentials are required for this call")


def _error(status: int, code: int, description: str) -> web.Response:
    return web.json_response(
        {"code": code, "description": description, "errorName": description.split(":")[0]},
        status=status,
    )


class _Handlers:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    async def list_agreements(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        sb = self.sb
        sb.agreements_in_flight += 1
        sb.agreements_peak = max(sb.agreements_peak, sb.agreements_in_flight)
        try:
            if _app_only(request.headers.get("Authorization", "")):
                return _app_only_refused()
            wanted = request.query.get("agreementType", CLOUD_AGREEMENT)
            return await self._agreements(partner, m["customer"].lower(), wanted)
        finally:
            sb.agreements_in_flight -= 1

    async def direct_status(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        if _app_only(request.headers.get("Authorization", "")):
            return _app_only_refused()
        if self.sb.knobs.direct_status is not None:
            return _error(self.sb.knobs.direct_status, 0, "SandboxFailure: forced by a knob")
        return web.json_response({"isSigned": m["customer"].lower() in self.sb.direct_signed})

    async def attest(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        attestation = f"attestation-{next(self.sb._ids)}"
        self.sb.attestations.add(attestation)
        return web.json_response({"attestationId": attestation, "status": "pending"}, status=201)

    async def _agreements(self, partner: str, customer: str, wanted: str) -> web.Response:
        knobs = self.sb.knobs
        if knobs.agreements_delay_s:
            await asyncio.sleep(knobs.agreements_delay_s)
        status = 429 if partner in knobs.throttled_partners else knobs.agreements_status
        if knobs.agreements_body is not None:  # with agreements_status: that status, this body
            status = status or 200
            kind = "application/json" if status == 200 else "text/html"
            return web.Response(status=status, body=knobs.agreements_body, content_type=kind)
        if status is not None:
            response = _error(status, 0, "SandboxFailure: forced by a knob")
            if knobs.agreements_retry_after is not None:
                response.headers["Retry-After"] = knobs.agreements_retry_after
            return response
        items = [
            item
            for item in self.sb.agreements.get((partner, customer), [])
            if wanted == "*" or str(item.get("type", "")).lower() == wanted.lower()
        ]
        return web.json_response(
            {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}}
        )

    async def confirm(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        knobs, key = self.sb.knobs, (partner, m["customer"].lower())
        if knobs.confirm_status is not None:
            return _error(knobs.confirm_status, 0, "SandboxFailure: forced by a knob")
        if knobs.already_exists_conflict and key in self.sb.agreements:
            return _error(409, 600061, "PartnerConfirmedAgreementAlreadyExists: confirmed before")
        doc = rec.json()
        lowered = {str(k).lower(): v for k, v in doc.items()} if isinstance(doc, dict) else {}
        if "attestationid" in lowered:
            if lowered["attestationid"] not in self.sb.attestations:
                return _error(400, 600090, "InvalidAttestation: no such attestation")
            today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
            doc = {"type": MCA, "dateAgreed": today, "attestationId": lowered["attestationid"]}
        elif isinstance(doc, dict) and "type" not in lowered:
            doc = {**doc, "type": CLOUD_AGREEMENT}  # as the API: absent means the Cloud Agreement
        self.sb.agreements.setdefault(key, []).append(doc)
        return web.json_response(doc, status=201)

    async def create_order(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        if self.sb.knobs.enforce_acceptance and (partner, m["customer"].lower()) not in (
            self.sb.agreements
        ):
            return _error(403, 13605, "CustomerAcceptanceRequired: confirm the MCA first")
        doc = rec.json()
        doc = doc if isinstance(doc, dict) else {"body": doc}
        return web.json_response({**doc, "id": f"order-{next(self.sb._ids)}"}, status=201)

    async def get_subscription(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        if self.sb.knobs.subscription_status is not None:
            return _error(self.sb.knobs.subscription_status, 0, "SandboxFailure: forced")
        key = (m["customer"].lower(), m["sub"].lower())
        quantity = self.sb.quantities.setdefault(key, 10)
        current = {**_SUBSCRIPTION, **self.sb.subscriptions.get(key, {})}
        return web.json_response({**current, "id": m["sub"], "quantity": quantity})

    async def patch_subscription(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        doc = rec.json()
        key = (m["customer"].lower(), m["sub"].lower())
        lowered = {k.lower(): v for k, v in doc.items()} if isinstance(doc, dict) else {}
        if isinstance(lowered.get("quantity"), int):
            self.sb.quantities[key] = lowered["quantity"]
        kept = self.sb.subscriptions.setdefault(key, {})
        for name in ("termDuration", "billingCycle", "scheduledNextTermInstructions"):
            if name.lower() in lowered:
                kept[name] = lowered[name.lower()]
        return web.json_response({**lowered, "id": m["sub"]})

    async def upload(
        self, request: web.Request, rec: Received, partner: str | None, **m: str
    ) -> web.Response:
        return web.json_response({"size": rec.size, "sha256": rec.sha256})

    async def stream_bytes(
        self, request: web.Request, rec: Received, partner: str | None, **m: str
    ) -> web.StreamResponse:
        size = int(request.query.get("size", "0"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if request.query.get("length"):
            response.content_length = size
        await response.prepare(request)
        block = bytes(range(256)) * 256
        while size > 0:
            await response.write(block[: min(size, len(block))])
            size -= len(block)
        await response.write_eof()
        return response

    async def abort_mid_body(
        self, request: web.Request, rec: Received, partner: str | None, **m: str
    ) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"x" * 100)
        if request.transport is not None:
            request.transport.abort()
        return response

    async def status(
        self, request: web.Request, rec: Received, partner: str | None, **m: str
    ) -> web.Response:
        return web.json_response({"status": int(m["code"])}, status=int(m["code"]))


async def _echo(request: web.Request, received: Received) -> web.Response:
    response = web.json_response(
        {
            "method": received.method,
            "path": received.path,
            "query_string": received.query_string,
            "headers": [[k, v] for k, v in received.headers.items()],
            "size": received.size,
            "sha256": received.sha256,
        }
    )
    response.headers.add("Set-Cookie", "a=1")
    response.headers.add("Set-Cookie", "b=2")
    response.headers["MS-RequestId"] = request.headers.get("MS-RequestId", "sandbox")
    return response


def create_app(sandbox: Sandbox | None = None) -> web.Application:
    """A Partner Center stand-in; its state is ``app[SANDBOX]``."""
    app = web.Application()
    app[SANDBOX] = sb = sandbox or Sandbox()
    handlers = _Handlers(sb)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        received = await _record(request, sb)
        if sb.knobs.delay_s and "/agreements" not in received.path.lower():
            await asyncio.sleep(sb.knobs.delay_s)
        path = received.path.lower()
        listed = sb.listing.answer(request.method, path, request.query, request.headers)
        if listed is not None:  # the customers list, or a throttled call (gate audit)
            return listed
        found = _route(request.method, path)
        if found is None:
            return await _echo(request, received)
        name, params = found
        partner = _partner_of(request.headers.get("Authorization", ""))
        if partner is None and path.startswith("/v1/"):
            return _error(401, 401, "Unauthorized: a bearer token with a tid claim is required")
        handler = getattr(handlers, name)
        response: web.StreamResponse = await handler(request, received, partner, **params)
        return response

    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def _record(request: web.Request, sb: Sandbox) -> Received:
    digest, size, kept = hashlib.sha256(), 0, bytearray()
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
        if size <= _KEEP_BODY:
            kept += chunk
    body = bytes(kept) if size <= _KEEP_BODY else b""
    path, _, query = request.raw_path.partition("?")
    received = Received(
        request.method, path, query, CIMultiDict(request.headers), body, size, digest.hexdigest()
    )
    sb.received.append(received)
    return received


# -- The customers list (``gate audit``): paged as Partner Center, throttled on demand --------
#
# GET /v1/customers?size=N answers {"totalCount", "items", "links": {"next": {"uri",
# "method", "headers": [{"key": "MS-ContinuationToken", "value"}]}}, "continuationToken",
# "attributes"}; the next page is GET /v1/customers?size=N&seekOperation=Next with that
# header. The token is an offset into the partner's list (opaque to clients), so a
# customer added in front of it between pages shows the last one again, as offset
# paging does: clients must not count a customer twice.

_PAGE_SIZE, _MAX_PAGE_SIZE = 100, 500
_COUNTED = re.compile(
    r"/v1/customers(/[^/]+/(agreements|directsignedmicrosoftcustomeragreementstatus))?"
)


@dataclass(slots=True)
class CustomerList:
    """Each partner's customers, their paging, and 429s on demand (``throttle``)."""

    customers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # partner ->
    pages_served: int = 0
    on_page: Callable[[int], None] | None = None  # after page n (1-based) is built: change it
    throttled_answers: int = 0  # calls answered 429 by ``throttle``
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status) per
    # call to the list or a customer's agreements / direct status: what a client's pacing did
    _calls: int = 0
    _throttle: tuple[int, int, str] | None = None  # (first call, last call, Retry-After)

    def add(self, partner: str, customer: str, company: str, *, front: bool = False) -> None:
        """A customer of ``partner``, shaped as Partner Center lists it (contacts included)."""
        item = {
            "id": customer,
            "commerceId": f"commerce-{customer}",
            "companyProfile": {
                "tenantId": customer,
                "domain": f"{company.split()[0].lower()}.onmicrosoft.com",
                "companyName": company,
                "attributes": {"objectType": "CustomerCompanyProfile"},
            },
            "billingProfile": {
                "firstName": "Grace",
                "lastName": "Hopper",
                "email": "grace.hopper@customer.example",
                "defaultAddress": {"phoneNumber": "+1 425 555 0199", "country": "US"},
            },
            "relationshipToPartner": "reseller",
            "attributes": {"objectType": "Customer"},
        }
        listed = self.customers.setdefault(partner.lower(), [])
        if front:
            listed.insert(0, item)
        else:
            listed.append(item)

    def add_many(self, partner: str, count: int, company: str = "Customer") -> list[str]:
        """``count`` more customers (thousands are fine), ids stable for a partner and index."""
        start = len(self.customers.get(partner.lower(), []))
        ids = [
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"{partner}/{n}"))
            for n in range(start, start + count)
        ]
        for n, customer in enumerate(ids, start):
            self.add(partner, customer, f"{company} {n}")
        return ids

    def throttle(self, *, after: int, times: int = 1, retry_after: str = "1") -> None:
        """Answer 429 (with ``retry_after``) to ``times`` calls to the customers list or a
        customer's agreements or direct status, once ``after`` more such calls were answered."""
        self._throttle = (self._calls + after, self._calls + after + times, retry_after)

    def answer(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> web.Response | None:
        """A throttled call's 429, the list's page (401 for an expired token), or None."""
        if method != "GET" or not _COUNTED.fullmatch(path):
            return None
        call, self._calls = self._calls, self._calls + 1
        throttled = self._throttle is not None and self._throttle[0] <= call < self._throttle[1]
        self.arrivals.append((time.monotonic(), 429 if throttled else 0))
        if throttled and self._throttle is not None:
            self.throttled_answers += 1
            response = _error(429, 429, "TooManyRequests: throttled by a sandbox knob")
            response.headers["Retry-After"] = self._throttle[2]
            return response
        if path != "/v1/customers":
            return None
        partner = _partner_of(headers.get("Authorization", ""))
        if partner is None:
            return None  # no partner: echoed, as every unrouted call (pass-through tests)
        expires = _claims_of(headers.get("Authorization", "")).get("exp")
        if isinstance(expires, int | float) and expires < time.time():
            return _error(401, 401, "Unauthorized: the token has expired")
        return self._page(partner, query, headers)

    def _page(
        self, partner: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> web.Response:
        size_text = query.get("size", str(_PAGE_SIZE))
        size = min(int(size_text), _MAX_PAGE_SIZE) if size_text.isdigit() else 0
        if size < 1:
            return _error(400, 400, "BadRequest: size must be a positive number")
        offset = 0
        if query.get("seekOperation", "").lower() == "next":
            offset = _offset_of(headers.get("MS-ContinuationToken", ""), partner)
            if offset < 0:
                return _error(400, 400, "InvalidContinuationToken: missing or not ours")
        listed = self.customers.get(partner, [])
        items = listed[offset : offset + size]
        self.pages_served += 1
        if self.on_page is not None:
            self.on_page(self.pages_served)
        doc: dict[str, Any] = {
            "totalCount": len(items),
            "items": items,
            "links": {"self": {"uri": f"/customers?size={size}", "method": "GET", "headers": []}},
            "attributes": {"objectType": "Collection"},
        }
        if offset + size < len(listed):
            token = base64.urlsafe_b64encode(f"{partner}:{offset + size}".encode()).decode()
            doc["continuationToken"] = token
            doc["links"]["next"] = {
                "uri": f"/customers?size={size}&seekOperation=Next",
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": token}],
            }
        return web.json_response(doc)


def _offset_of(token: str, partner: str) -> int:
    """The offset a continuation token stands for; -1 when it is not one of ours."""
    try:
        owner, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return -1
    return int(offset) if owner == partner and offset.isdigit() else -1
