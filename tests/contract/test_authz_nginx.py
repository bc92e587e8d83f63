"""DESIGN §4 decision service behind a real nginx: deploy/nginx/gate.conf.template, auth_request.

nginx (Debian nginx-light, which has the auth_request module) is started from
exactly the shipped template rendered by envsubst, in front of the sandbox
Partner Center, asking a real `gate serve` process; each test stops it by PID.
A client of nginx must see what a client of the gate's proxy sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Upstream
from tests.contract.conftest import Served, ServeGate, exchange, free_port
from tests.support import (
    CONTACT_EMAIL,
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    order,
    orders_path,
    subscription_path,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "gate.conf.template"
VARIABLES = ("NGINX_LISTEN", "UPSTREAM_URL", "UPSTREAM_SERVER", "GATE_AUTHZ", "GATE_PROXY")
_BOUND_S = 20.0


def _tool(name: str) -> str:
    """A command on PATH; else skip with the reason (fail under CI, which installs it)."""
    found = shutil.which(name)
    if found is None:
        package = {"nginx": "nginx-light", "envsubst": "gettext-base"}[name]
        reason = f"{name} is not installed (Debian package {package}, via scripts/ensure-debian)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI installs it, so this is a broken install")
        pytest.skip(reason)
    return found


def render(variables: dict[str, str]) -> str:
    """The template as `envsubst '$NGINX_LISTEN ...' < gate.conf.template` renders it."""
    names = " ".join(f"${name}" for name in VARIABLES)
    env = {"PATH": os.environ.get("PATH", ""), **variables}
    result = subprocess.run(
        [_tool("envsubst"), names], input=TEMPLATE.read_text(encoding="utf-8"),
        env=env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return result.stdout


@dataclass
class Nginx:
    """A running nginx, the gate behind it, and the sandbox behind both."""

    url: str
    port: int
    process: asyncio.subprocess.Process
    prefix: Path
    gate: Served
    upstream: Upstream

    def error_log(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text(encoding="utf-8") if log.exists() else ""

    def decisions(self) -> list[dict[str, Any]]:
        return self.gate.decisions()

    async def decided(self, count: int) -> list[dict[str, Any]]:
        return await self.gate.decided(count)

    def lookups(self, customer: str = CUSTOMER) -> int:
        return len(self.upstream.sandbox.calls("GET", agreements_path(customer)))

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        """One call through nginx: status, headers, body."""
        async with (
            aiohttp.ClientSession() as session,
            asyncio.timeout(_BOUND_S),
            session.request(method, self.url + path, **kwargs) as response,
        ):
            return response.status, response.headers, await response.read()


async def _wait_listening(process: asyncio.subprocess.Process, port: int, prefix: Path) -> None:
    async with asyncio.timeout(_BOUND_S):
        while True:
            if process.returncode is not None:
                log = (prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""
                raise AssertionError(f"nginx exited early: {log}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


StartNginx = Callable[..., Awaitable[Nginx]]


@pytest.fixture
async def start_nginx(
    serve_gate: ServeGate, upstream: Upstream, tmp_path: Path
) -> AsyncIterator[StartNginx]:
    """Render the template into tmp_path, start nginx on a free port; stopped by PID after."""
    nginx_bin = _tool("nginx")
    started: list[asyncio.subprocess.Process] = []

    async def start(authz_port: int | None = None) -> Nginx:
        port, gate_authz = free_port(), free_port()
        gate = await serve_gate(extra=f'[authz]\nlisten = "127.0.0.1:{gate_authz}"\n')
        upstream_address = upstream.url.removeprefix("http://")
        conf = render({
            "NGINX_LISTEN": f"127.0.0.1:{port}",
            "UPSTREAM_URL": upstream.url,
            "UPSTREAM_SERVER": upstream_address,
            "GATE_AUTHZ": f"127.0.0.1:{authz_port or gate_authz}",
            "GATE_PROXY": gate.proxy_url.removeprefix("http://"),
        })  # fmt: skip
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        (prefix / "gate.conf").write_text(conf, encoding="utf-8")
        with (prefix / "stderr").open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                nginx_bin, "-p", f"{prefix}/", "-c", "gate.conf", "-g", "daemon off;",
                stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        started.append(process)
        await _wait_listening(process, port, prefix)
        return Nginx(f"http://127.0.0.1:{port}", port, process, prefix, gate, upstream)

    yield start
    for process in started:
        if process.returncode is None:
            process.terminate()  # SIGTERM: the master stops its workers, then exits
        try:
            async with asyncio.timeout(_BOUND_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def nginx(start_nginx: StartNginx) -> Nginx:
    """nginx from the template, in front of the sandbox, asking a running gate."""
    return await start_nginx()


def _error(body: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(body)
    assert doc["source"] == "gate"
    return doc


# -- blocked, confirmed, allowed -----------------------------------------------------------


async def test_unconfirmed_order_is_blocked_by_nginx_with_the_gates_answer(nginx: Nginx) -> None:
    """R1 via §4: nginx refuses an unconfirmed order with the gate's 403 13605 and forwards none."""
    status, headers, body = await nginx.request("POST", orders_path(), json=order(), headers=auth())
    assert status == 403
    assert headers["X-Gate-Decision"] == "blocked"
    assert headers["Content-Type"].startswith("application/json")
    doc = _error(body)
    assert (doc["code"], doc["errorName"]) == (13605, "CustomerAcceptanceRequired")
    assert f"POST /v1/customers/{CUSTOMER}/agreements" in doc["description"]
    assert "X-Gate-Status" not in headers and "X-Gate-Error" not in headers
    assert nginx.upstream.sandbox.calls("POST", "/orders") == []
    assert [line["decision"] for line in await nginx.decided(1)] == ["blocked"]


async def test_confirmation_through_nginx_is_recorded_then_the_order_passes(nginx: Nginx) -> None:
    """R5 via §4: a confirmation nginx routes to the gate's proxy makes the next order pass."""
    status, headers, _ = await nginx.request(
        "POST", agreements_path(), json=confirmation(), headers=auth()
    )
    assert (status, headers["X-Gate-Decision"]) == (201, "allowed")
    assert len(nginx.upstream.sandbox.calls("POST", agreements_path())) == 1
    status, headers, _ = await nginx.request("POST", orders_path(), json=order(), headers=auth())
    assert (status, headers["X-Gate-Decision"]) == (201, "allowed")
    (received,) = nginx.upstream.sandbox.calls("POST", "/orders")
    assert received.json() == order()
    assert nginx.lookups() == 0  # recorded at once: the order needed no lookup


async def test_confirmation_path_is_routed_whatever_its_case(nginx: Nginx) -> None:
    """R5 via §4: the template sends POST .../AGREEMENTS/ to the gate's proxy too (checked, R6)."""
    path = f"/V1/Customers/{CUSTOMER}/AGREEMENTS/"
    status, headers, body = await nginx.request("POST", path, data=b"not json", headers=auth())
    assert (status, headers["X-Gate-Decision"]) == (400, "blocked")
    assert _error(body)["errorName"] == "InvalidAcceptance"
    assert nginx.upstream.sandbox.calls("POST", "/agreements") == []


async def test_incomplete_confirmation_is_refused_and_never_forwarded(nginx: Nginx) -> None:
    """R6 via §4: a confirmation without its contact is answered 400 InvalidAcceptance."""
    status, headers, body = await nginx.request(
        "POST", agreements_path(), json=confirmation(primaryContact=None), headers=auth()
    )
    assert status == 400
    assert headers["X-Gate-Decision"] == "blocked"
    doc = _error(body)
    assert doc["errorName"] == "InvalidAcceptance"
    assert CONTACT_EMAIL not in body.decode()
    assert nginx.upstream.sandbox.calls("POST", "/agreements") == []


async def test_accepted_seat_change_reaches_upstream_with_its_body(nginx: Nginx) -> None:
    """R1 via §4: once confirmed, a subscription PATCH passes nginx with its body unchanged."""
    nginx.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    doc = {"quantity": 12, "friendlyName": "seats"}
    status, headers, _ = await nginx.request("PATCH", subscription_path(), json=doc, headers=auth())
    assert (status, headers["X-Gate-Decision"]) == (200, "allowed")
    (received,) = nginx.upstream.sandbox.calls("PATCH", subscription_path())
    assert received.json() == doc


async def test_subscription_edit_without_a_readable_body_is_a_seat_change(nginx: Nginx) -> None:
    """§1.1 via §4: nginx sends no body to the gate, so an unconfirmed nickname change is held."""
    doc = {"friendlyName": "renamed"}
    status, headers, body = await nginx.request(
        "PATCH", subscription_path(), json=doc, headers=auth()
    )
    assert (status, headers["X-Gate-Decision"]) == (403, "blocked")
    assert _error(body)["data"][0]["transaction"] == "seat_change"
    assert nginx.upstream.sandbox.calls("PATCH", subscription_path()) == []


# -- reads untouched -----------------------------------------------------------------------


async def test_reads_pass_nginx_without_asking_the_gate(nginx: Nginx) -> None:
    """R2 via §4: a GET passes nginx with no subrequest: no lookup, no header, no decision line."""
    status, headers, body = await nginx.request("GET", subscription_path(), headers=auth())
    assert status == 200
    assert json.loads(body)["quantity"] == 10
    assert "X-Gate-Decision" not in headers
    status, _, _ = await nginx.request("HEAD", orders_path(), headers=auth())
    assert status == 200
    assert nginx.lookups() == 0
    # a gated call after them is the gate's first and only decision line
    await nginx.request("POST", orders_path(), json=order(), headers=auth())
    assert [line["path"] for line in await nginx.decided(1)] == [orders_path()]


async def test_a_read_with_a_method_override_is_checked_by_the_gate(nginx: Nginx) -> None:
    """§2 via §4: a GET naming POST in X-HTTP-Method-Override is asked about, and refused."""
    headers = {**auth(), "X-HTTP-Method-Override": "POST"}
    status, answer, body = await nginx.request("GET", orders_path(), headers=headers)
    assert (status, answer["X-Gate-Decision"]) == (400, "blocked")
    assert _error(body)["errorName"] == "AmbiguousMethod"
    assert nginx.upstream.sandbox.calls("GET", "/orders") == []


async def test_client_cannot_name_the_checked_target(nginx: Nginx) -> None:
    """§4: X-Original-URI/-Method sent by a client are replaced by nginx: the order is checked."""
    headers = {**auth(), "X-Original-URI": subscription_path(), "X-Original-Method": "GET"}
    status, answer, _ = await nginx.request("POST", orders_path(), json=order(), headers=headers)
    assert (status, answer["X-Gate-Decision"]) == (403, "blocked")
    assert nginx.upstream.sandbox.calls("POST", "/orders") == []


# -- refusals keep their real status -------------------------------------------------------


async def test_order_without_a_token_is_401_partner_unknown(nginx: Nginx) -> None:
    """§2 via §4: a gated call without a partner is 401 PartnerUnknown through nginx too."""
    status, headers, body = await nginx.request("POST", orders_path(), json=order())
    assert (status, headers["X-Gate-Decision"]) == (401, "blocked")
    assert headers["Content-Type"].startswith("application/json")
    assert _error(body)["errorName"] == "PartnerUnknown"
    assert nginx.upstream.sandbox.calls("POST", "/orders") == []


async def test_encoded_slash_on_an_order_path_is_refused_as_by_the_proxy(nginx: Nginx) -> None:
    """§2 via §4: nginx passes %2F on, the gate refuses it 400 AmbiguousPath, as its proxy does."""
    body = json.dumps(order()).encode()
    request = (
        f"POST /v1/customers/{CUSTOMER}%2Forders HTTP/1.1\r\nHost: gate\r\n"
        f"Authorization: {auth()['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    (via_nginx,) = await exchange(nginx.port, request)
    (via_proxy,) = await exchange(int(nginx.gate.proxy_url.rpartition(":")[2]), request)
    assert via_nginx.status == via_proxy.status == 400
    assert _error(via_nginx.body)["errorName"] == _error(via_proxy.body)["errorName"]
    assert _error(via_nginx.body)["errorName"] == "AmbiguousPath"
    assert via_nginx.headers.get("X-Gate-Decision") == via_proxy.headers.get("X-Gate-Decision")
    assert via_nginx.headers["Content-Type"].startswith("application/json")
    assert nginx.upstream.sandbox.calls("POST", "") == []


async def test_failed_lookup_is_503_with_retry_after(nginx: Nginx) -> None:
    """§2 via §4: a failed lookup, fail-closed, is 503 AcceptanceStatusUnavailable + Retry-After."""
    nginx.upstream.sandbox.knobs.agreements_status = 500
    status, headers, body = await nginx.request("POST", orders_path(), json=order(), headers=auth())
    assert (status, headers["X-Gate-Decision"]) == (503, "blocked")
    assert int(headers["Retry-After"]) > 0
    assert _error(body)["errorName"] == "AcceptanceStatusUnavailable"
    assert nginx.upstream.sandbox.calls("POST", "/orders") == []


# -- fail closed ---------------------------------------------------------------------------


async def test_gated_call_fails_closed_when_the_decision_service_is_down(
    start_nginx: StartNginx,
) -> None:
    """§4: with nothing on GATE_AUTHZ an order gets a 5xx and is never forwarded; reads pass."""
    nginx = await start_nginx(authz_port=free_port())
    nginx.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    status, headers, _ = await nginx.request("POST", orders_path(), json=order(), headers=auth())
    assert status == 500  # auth_request could not ask: nginx's own 500
    assert "X-Gate-Decision" not in headers
    assert nginx.upstream.sandbox.calls("POST", "/orders") == []
    status, _, _ = await nginx.request("GET", subscription_path(), headers=auth())
    assert status == 200


async def test_stopped_gate_lets_no_gated_call_or_confirmation_through(nginx: Nginx) -> None:
    """§4: once the gate process is gone, orders and confirmations get a 5xx, forwarded never."""
    nginx.gate.stop()
    await nginx.gate.wait_exit()
    status, _, _ = await nginx.request("POST", orders_path(), json=order(), headers=auth())
    assert status == 500
    status, _, _ = await nginx.request(
        "POST", agreements_path(), json=confirmation(), headers=auth()
    )
    assert status == 502  # the gate's proxy listener is gone too
    assert nginx.upstream.sandbox.calls("POST", "") == []


async def test_subrequest_without_x_original_method_is_refused(serve_gate: ServeGate) -> None:
    """§4: an auth_request check with X-Original-URI but no X-Original-Method is refused 400."""
    port = free_port()
    await serve_gate(extra=f'[authz]\nlisten = "127.0.0.1:{port}"\n')
    headers = {**auth(), "X-Original-URI": orders_path()}
    async with (
        aiohttp.ClientSession() as session,
        asyncio.timeout(_BOUND_S),
        session.get(f"http://127.0.0.1:{port}/_gate/check", headers=headers) as response,
    ):
        assert response.status == 403  # the nginx shape: the real status rides in a header
        assert response.headers["X-Gate-Status"] == "400"
        assert json.loads(response.headers["X-Gate-Error"])["source"] == "gate"
