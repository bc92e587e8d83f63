"""The admin listener: /metrics, /healthz, /readyz and /admin/acceptance/{partner}/{customer}.

It runs on its own listener (loopback by default), so the proxy app keeps
zero middlewares; here a token middleware guards ``/admin/*`` when a token
is configured.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gate.keys import METRICS, STATE, STORE

__all__ = ["PROXY", "add_routes", "token_guard"]

PROXY = web.AppKey("proxy", web.Application)


def token_guard(token: str) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path.startswith("/admin/"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _json({"error": "unauthorized"}, status=401)
        return await handler(request)

    return guard


def _json(doc: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(doc).encode(), content_type="application/json"
    )


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[PROXY][METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[PROXY][STATE]
    if state.listening and not state.draining:
        return _json({"status": "ready"})
    return _json({"status": "draining" if state.draining else "starting"}, status=503)


def _pair(request: web.Request) -> tuple[str, str]:
    return request.match_info["partner"].lower(), request.match_info["customer"].lower()


async def inspect_acceptance(request: web.Request) -> web.Response:
    partner, customer = _pair(request)
    entry = request.app[PROXY][STORE].inspect(partner, customer)
    if entry is None:
        return _json({"partner": partner, "customer": customer, "error": "not cached"}, 404)
    return _json(
        {
            "partner": partner,
            "customer": customer,
            "status": entry.state.value,
            "source": entry.source,
            "cached_at": _rfc3339(entry.cached_at),
            "expires_at": _rfc3339(entry.cached_at + entry.ttl),
        }
    )


async def drop_acceptance(request: web.Request) -> web.Response:
    partner, customer = _pair(request)
    if request.app[PROXY][STORE].drop(partner, customer):
        return web.Response(status=204)
    return _json({"partner": partner, "customer": customer, "error": "not cached"}, 404)


def add_routes(app: web.Application, proxy: web.Application) -> None:
    app[PROXY] = proxy
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/admin/acceptance/{partner}/{customer}", inspect_acceptance)
    app.router.add_delete("/admin/acceptance/{partner}/{customer}", drop_acceptance)
