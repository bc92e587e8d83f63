"""gate.admin: the admin listener's routes and token guard over an in-memory ``Operated``.

The admin app is real (``add_routes`` + ``token_guard``) on a loopback test
server; what it operates is a small implementation of its ``Operated``
interface written here, so each route's own rules are seen alone. The
whole gate behind it (LocalGate, workers) is in tests/contract/test_admin.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gate import admin
from gate.config import ConfigError, Settings
from tests.support import CUSTOMER, PARTNER_A

Client = TestClient[web.Request, web.Application]


class Fleet:
    """An operated gate in memory: one cached pair, a token, a readiness, a reload verdict."""

    def __init__(self, token: str = "") -> None:
        self.admin_token = token
        self.state = "ready"
        self.pairs = {(PARTNER_A, CUSTOMER): {"status": "accepted"}}
        self.problems: list[str] = []
        self.reloads = 0

    def token(self) -> str:
        return self.admin_token

    def readiness(self) -> str:
        return self.state

    async def metrics_text(self) -> bytes:
        return b"gate_up 1\n"

    async def inspect(self, partner: str, customer: str) -> dict[str, Any] | None:
        return self.pairs.get((partner, customer))

    async def drop(self, partner: str, customer: str) -> bool:
        return self.pairs.pop((partner, customer), None) is not None

    async def reload(self) -> list[str]:
        self.reloads += 1
        return self.problems


async def serve(aiohttp_client: AiohttpClient, fleet: Fleet) -> Client:
    app = web.Application(middlewares=[admin.token_guard()])
    admin.add_routes(app, fleet)
    return await aiohttp_client(app, server_kwargs={"host": "127.0.0.1"})


PAIR = f"/admin/acceptance/{PARTNER_A.upper()}/{CUSTOMER}"


async def test_without_a_token_admin_routes_are_open(aiohttp_client: AiohttpClient) -> None:
    """No admin.token: the listener (loopback by default) needs no Authorization."""
    client = await serve(aiohttp_client, Fleet())
    assert (await client.get(PAIR)).status == 200


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        pytest.param(None, 401, id="none"),
        pytest.param("Bearer wrong", 401, id="wrong"),
        pytest.param("Basic s3cret", 401, id="other-scheme"),
        pytest.param("Bearer s3cret", 200, id="right"),
        pytest.param("bearer  s3cret ", 200, id="scheme-any-case"),
    ],
)
async def test_a_token_guards_admin_routes(
    aiohttp_client: AiohttpClient, authorization: str | None, status: int
) -> None:
    """admin.token set: /admin/* needs it as a bearer token."""
    client = await serve(aiohttp_client, Fleet("s3cret"))
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get(PAIR, headers=headers)
    assert response.status == status
    if status == 401:
        assert await response.json() == {"error": "unauthorized"}


async def test_health_and_metrics_stay_open_under_a_token(aiohttp_client: AiohttpClient) -> None:
    """Probes and scrapers carry no token: only /admin/* is guarded."""
    client = await serve(aiohttp_client, Fleet("s3cret"))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    scraped = await client.get("/metrics")
    assert (scraped.status, await scraped.read()) == (200, b"gate_up 1\n")
    assert scraped.headers["Content-Type"].startswith("text/plain")


async def test_a_rotated_token_applies_at_once(aiohttp_client: AiohttpClient) -> None:
    """The guard reads the current token on every call, so a reload rotates it."""
    fleet = Fleet("old")
    client = await serve(aiohttp_client, fleet)
    fleet.admin_token = "new"
    assert (await client.get(PAIR, headers={"Authorization": "Bearer old"})).status == 401
    assert (await client.get(PAIR, headers={"Authorization": "Bearer new"})).status == 200


@pytest.mark.parametrize(
    ("state", "status"), [("ready", 200), ("starting", 503), ("draining", 503)]
)
async def test_readyz_is_ready_only_when_ready(
    aiohttp_client: AiohttpClient, state: str, status: int
) -> None:
    """§5: a load balancer stops sending before the drain and until the listener is up."""
    fleet = Fleet()
    fleet.state = state
    response = await (await serve(aiohttp_client, fleet)).get("/readyz")
    assert (response.status, await response.json()) == (status, {"status": state})


async def test_inspect_and_drop_a_pair_by_lowercase_ids(aiohttp_client: AiohttpClient) -> None:
    """Tenant ids are matched lowercased; a pair not cached is a 404 naming it."""
    client = await serve(aiohttp_client, Fleet())
    found = await client.get(PAIR)
    assert (found.status, await found.json()) == (200, {"status": "accepted"})
    assert (await client.delete(PAIR)).status == 204
    missing = await client.get(PAIR)
    assert missing.status == 404
    assert await missing.json() == {
        "partner": PARTNER_A,
        "customer": CUSTOMER,
        "error": "not cached",
    }
    assert (await client.delete(PAIR)).status == 404


async def test_reload_says_why_it_was_refused(aiohttp_client: AiohttpClient) -> None:
    """POST /admin/reload: 200 when applied, 400 with each problem when refused."""
    fleet = Fleet()
    client = await serve(aiohttp_client, fleet)
    applied = await client.post("/admin/reload")
    assert (applied.status, await applied.json()) == (200, {"status": "reloaded"})
    fleet.problems = ["server.listen: changes need a restart"]
    refused = await client.post("/admin/reload")
    assert refused.status == 400
    assert await refused.json() == {"status": "refused", "problems": fleet.problems}
    assert fleet.reloads == 2


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        pytest.param({"policy": {"mode": "observe"}}, [], id="policy-live"),
        pytest.param({"admin": {"token": "t"}}, [], id="token-live"),
        pytest.param({"server": {"max_gated_body_bytes": 4096}}, [], id="body-limit-live"),
        pytest.param({"server": {"listen": "127.0.0.1:1"}},
                     ["server.listen: changes need a restart"], id="listener"),
        pytest.param({"acceptance": {"max_entries": 5}, "upstream": {"url": "http://x"}},
                     ["upstream.url: changes need a restart",
                      "acceptance.max_entries: changes need a restart"], id="two-built-once"),
    ],
)  # fmt: skip
def test_a_reload_refuses_what_needs_a_restart(changes: dict[str, Any], refused: list[str]) -> None:
    """Listeners, the pool, the cache and the logger are built once; policy and rules are live."""
    try:
        admin.check_restart_free(Settings(), Settings(**changes))
        problems: list[str] = []
    except ConfigError as error:
        problems = error.problems
    assert problems == refused
