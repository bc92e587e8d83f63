"""A small Partner Center stand-in: the upstream of ``gate demo`` and of every test.

A real aiohttp server (never a mock) that keeps per-partner agreements,
orders and subscriptions in memory, records each call it receives, and has
knobs for the failures a gate must survive: a status, a delay, a broken body.
Paths are matched case-insensitively, as Partner Center's own front end does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

__all__ = ["SANDBOX", "Knobs", "Received", "Sandbox", "create_app", "make_token"]

_KEEP_BODY = 1024 * 1024


def make_token(partner: str, **claims: Any) -> str:
    """An unsigned JWT with a tid claim: enough for the gate, which never verifies."""

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'tid': partner, **claims})}.sig"


def _partner_of(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    parts = token.split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    tid = claims.get("tid") if isinstance(claims, dict) else None
    return tid.lower() if isinstance(tid, str) else None


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
    knobs: Knobs = field(default_factory=Knobs)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def accept(self, partner: str, customer: str) -> None:
        self.agreements.setdefault((partner.lower(), customer.lower()), []).append(
            {"type": "MicrosoftCloudAgreement", "dateAgreed": "2024-01-01T00:00:00Z"}
        )

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
        knobs = self.sb.knobs
        if knobs.agreements_delay_s:
            await asyncio.sleep(knobs.agreements_delay_s)
        if knobs.agreements_body is not None:  # with agreements_status: that status, this body
            status = knobs.agreements_status or 200
            kind = "application/json" if status == 200 else "text/html"
            return web.Response(status=status, body=knobs.agreements_body, content_type=kind)
        if knobs.agreements_status is not None:
            return _error(knobs.agreements_status, 0, "SandboxFailure: forced by a knob")
        items = self.sb.agreements.get((partner, m["customer"].lower()), [])
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
        return web.json_response({"id": m["sub"], "quantity": quantity, "status": "active"})

    async def patch_subscription(
        self, request: web.Request, rec: Received, partner: str, **m: str
    ) -> web.Response:
        doc = rec.json()
        key = (m["customer"].lower(), m["sub"].lower())
        lowered = {k.lower(): v for k, v in doc.items()} if isinstance(doc, dict) else {}
        if isinstance(lowered.get("quantity"), int):
            self.sb.quantities[key] = lowered["quantity"]
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
