"""The admin listener: /metrics, /healthz, /readyz, /admin/acceptance/..., /admin/reload.

It runs on its own listener (loopback by default) and operates an
``Operated``: this process's gate, or, with ``server.workers > 1``, the
whole fleet of workers through their control channels (``gate.workers``),
so an operator always sees one gate. A token middleware guards ``/admin/*``
when a token is configured.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gate.config import ConfigError, Settings, load
from gate.keys import CONFIG_PATH, LOGGER, METRICS, RUNTIME, STATE, STORE, TLS
from gate.runtime import Runtime, compile_settings

__all__ = [
    "OPERATED",
    "LocalGate",
    "Operated",
    "add_routes",
    "check_restart_free",
    "reload",
    "token_guard",
]


class Operated(Protocol):
    """What the admin listener operates: one process (``LocalGate``) or a fleet of workers."""

    def token(self) -> str: ...

    def readiness(self) -> str:
        """ "ready", "starting" or "draining"."""
        ...

    async def metrics_text(self) -> bytes: ...

    async def inspect(self, partner: str, customer: str) -> dict[str, Any] | None: ...

    async def drop(self, partner: str, customer: str) -> bool: ...

    async def reload(self) -> list[str]:
        """Apply the config file everywhere; the problems that refused it (empty: applied)."""
        ...


OPERATED = web.AppKey("operated", Operated)


class LocalGate:
    """The gate of this process, as the admin listener (or a worker's control channel) sees it."""

    def __init__(self, proxy: web.Application) -> None:
        self._proxy = proxy

    def token(self) -> str:
        return self._proxy[RUNTIME].current.settings.admin.token

    def readiness(self) -> str:
        state = self._proxy[STATE]
        if state.draining:
            return "draining"
        return "ready" if state.listening else "starting"

    async def metrics_text(self) -> bytes:
        return generate_latest(self._proxy[METRICS].registry)

    async def inspect(self, partner: str, customer: str) -> dict[str, Any] | None:
        entry = self._proxy[STORE].inspect(partner, customer)
        if entry is None:
            return None
        return {
            "partner": partner,
            "customer": customer,
            "status": entry.state.value,
            "source": entry.source,
            "cached_at": _rfc3339(entry.cached_at),
            "expires_at": _rfc3339(entry.cached_at + entry.ttl),
        }

    async def drop(self, partner: str, customer: str) -> bool:
        return self._proxy[STORE].drop(partner, customer)

    async def reload(self) -> list[str]:
        return reload(self._proxy)


def token_guard() -> Middleware:
    """Guard /admin/* with the current config's token (so a reload can rotate it)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.app[OPERATED].token()
        if token and request.path.startswith("/admin/"):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            valid = scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), token.encode()
            )
            if not valid:
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
    body = await request.app[OPERATED].metrics_text()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[OPERATED].readiness()
    return _json({"status": readiness}, status=200 if readiness == "ready" else 503)


def _pair(request: web.Request) -> tuple[str, str]:
    return request.match_info["partner"].lower(), request.match_info["customer"].lower()


async def inspect_acceptance(request: web.Request) -> web.Response:
    partner, customer = _pair(request)
    found = await request.app[OPERATED].inspect(partner, customer)
    if found is None:
        return _json({"partner": partner, "customer": customer, "error": "not cached"}, 404)
    return _json(found)


async def drop_acceptance(request: web.Request) -> web.Response:
    partner, customer = _pair(request)
    if await request.app[OPERATED].drop(partner, customer):
        return web.Response(status=204)
    return _json({"partner": partner, "customer": customer, "error": "not cached"}, 404)


_SECTIONS_BUILT_ONCE = ("server", "admin", "upstream", "acceptance", "authz", "log")
_LIVE_KEYS = frozenset({"admin.token", "server.max_gated_body_bytes", "upstream.cloud"})
# TLS files are read anew on every reload, from changed paths too (gate.http.tls refuses
# turning TLS or mutual TLS on or off, which needs a restart).
_LIVE_KEYS |= {
    f"{section}.{key}"
    for section in ("server", "admin", "authz")
    for key in ("tls_cert_file", "tls_key_file", "tls_client_ca_file")
}


def check_restart_free(old: Settings, new: Settings) -> None:
    """Refuse what a reload cannot apply: listeners, the upstream pool, the cache, the logger.

    Policy, rules and identity (and the keys in ``_LIVE_KEYS``) are read from
    the swapped runtime; everything else was built at start.
    """
    problems = []
    for section in _SECTIONS_BUILT_ONCE:
        before, after = getattr(old, section).model_dump(), getattr(new, section).model_dump()
        for key, value in before.items():
            name = f"{section}.{key}"
            if after[key] != value and name not in _LIVE_KEYS:
                problems.append(f"{name}: changes need a restart")
    if problems:
        raise ConfigError(problems)


def _candidate(app: web.Application) -> tuple[Runtime, Callable[[], None]]:
    """The config file compiled as a reload would apply it, and its TLS pairs loaded (with
    what puts them in use); ConfigError when refused."""
    path = app[CONFIG_PATH]
    runtime = compile_settings(load(Path(path) if path else None))
    check_restart_free(app[RUNTIME].current.settings, runtime.settings)
    return runtime, app[TLS].prepare(runtime.settings)


def reload(app: web.Application) -> list[str]:
    """Re-read the config and swap it in at once; a bad file changes nothing.

    Returns the problems that refused the new config (empty on success).
    """
    path = app[CONFIG_PATH]
    try:
        runtime, rotate = _candidate(app)
    except ConfigError as error:
        app[METRICS].reloads["error"].inc()
        app[LOGGER].error("reload_refused", path=path, problems=error.problems)
        return error.problems
    app[RUNTIME].current = runtime
    rotate()  # new TLS handshakes get the new certificates; open connections keep theirs
    app[METRICS].reloads["ok"].inc()
    app[LOGGER].info("reloaded", path=path, mode=runtime.settings.policy.mode)
    return []


async def reload_config(request: web.Request) -> web.Response:
    problems = await request.app[OPERATED].reload()
    if problems:
        return _json({"status": "refused", "problems": problems}, status=400)
    return _json({"status": "reloaded"})


def add_routes(app: web.Application, operated: Operated) -> None:
    app[OPERATED] = operated
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/admin/acceptance/{partner}/{customer}", inspect_acceptance)
    app.router.add_delete("/admin/acceptance/{partner}/{customer}", drop_acceptance)
    app.router.add_post("/admin/reload", reload_config)
