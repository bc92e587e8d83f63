"""DESIGN §3/§5 TLS on the gate's own listeners: TLS only, mutual TLS, rotation on reload.

Every certificate is made here (trustme) and every check runs over real
loopback sockets: in-process gates on asyncio's loop, and `gate serve`
processes on uvloop, whose TLS layer is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from gate import admin
from gate.app import create_app
from gate.config import load
from tests.certs import Authority, Pair, peer_serial
from tests.conftest import ServeApp, StartGate, Upstream
from tests.contract.conftest import RawResponse, Served, exchange, free_port, read_response
from tests.support import CUSTOMER, GATE_COMMAND, auth, metric, order, orders_path

_BOUND_S = 20.0
_EXPIRY = "gate_tls_certificate_expiry_timestamp_seconds"
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "gate-ca")


@pytest.fixture
def stranger(tmp_path: Path) -> Authority:
    """Another CA, which the gate does not trust."""
    return Authority(tmp_path, "other-ca")


@asynccontextmanager
async def _tls(port: int, context: ssl.SSLContext) -> AsyncIterator[Conn]:
    """A TLS connection to a loopback port, closed after."""
    async with asyncio.timeout(_BOUND_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def _ask(conn: Conn, request: bytes) -> RawResponse | None:
    reader, writer = conn
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(_BOUND_S):
        return await read_response(reader)


def _get(path: str = "/v1/customers", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gate\r\n{extra}\r\n".encode()


def _post(path: str, body: bytes) -> bytes:
    token = auth()["Authorization"]
    return (
        f"POST {path} HTTP/1.1\r\nHost: gate\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _ssl_object(conn: Conn) -> ssl.SSLObject:
    found = conn[1].get_extra_info("ssl_object")
    assert isinstance(found, ssl.SSLObject)
    return found


async def _refused(port: int, context: ssl.SSLContext) -> bool:
    """The handshake or the first exchange fails: no HTTP answer comes back."""
    try:
        async with _tls(port, context) as conn:
            return await _ask(conn, _get()) is None
    except (ssl.SSLError, ConnectionError):
        return True


# -- the proxy listener in-process (asyncio's TLS) --------------------------------------------


async def test_proxy_speaks_tls_and_says_https_upstream(
    start_gate: StartGate, authority: Authority
) -> None:
    """§3 server.tls_*: TLS 1.2+ with ALPN http/1.1; the upstream hears X-Forwarded-Proto https."""
    pair = authority.issue()
    gate = await start_gate(server=pair.settings())
    port = gate.client.server.port
    context = authority.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    async with _tls(port, context) as conn:
        response = await _ask(conn, _get())
        assert _ssl_object(conn).selected_alpn_protocol() == "http/1.1"
        assert _ssl_object(conn).version() in {"TLSv1.2", "TLSv1.3"}
        assert peer_serial(_ssl_object(conn)) == pair.serial
    assert response is not None and response.status == 200
    (received,) = gate.upstream.sandbox.received
    assert received.headers.getall("X-Forwarded-Proto") == ["https"]
    only_12 = authority.client_context()
    only_12.maximum_version = ssl.TLSVersion.TLSv1_2
    async with _tls(port, only_12) as conn:
        assert _ssl_object(conn).version() == "TLSv1.2"
        response = await _ask(conn, _get())
        assert response is not None and response.status == 200
    assert metric(await gate.metrics(), _EXPIRY, listener="proxy") == pair.not_after


async def test_plain_http_to_a_tls_listener_is_closed_without_an_answer(
    start_gate: StartGate, authority: Authority
) -> None:
    """§3 TLS only: a plain-HTTP request on the TLS port is closed at once, nothing forwarded."""
    gate = await start_gate(server=authority.issue().settings())
    responses = await exchange(gate.client.server.port, _get())  # returns once it is closed
    assert responses == []
    assert gate.upstream.sandbox.received == []


@pytest.mark.parametrize("client", ["none", "stranger", "trusted"])
async def test_mutual_tls_admits_only_clients_of_the_configured_ca(
    start_gate: StartGate, authority: Authority, stranger: Authority, client: str
) -> None:
    """§3 server.tls_client_ca_file: a client certificate from that CA passes; none, or one
    from another CA, is refused in the handshake and nothing reaches the upstream."""
    gate = await start_gate(server=authority.issue().settings(authority.ca_file))
    presented = {
        "none": None,
        "stranger": stranger.issue("partner-client"),
        "trusted": authority.issue("partner-client"),
    }[client]
    context = authority.client_context(presented)
    port = gate.client.server.port
    if client == "trusted":
        async with _tls(port, context) as conn:
            response = await _ask(conn, _get())
        assert response is not None and response.status == 200
        assert len(gate.upstream.sandbox.received) == 1
    else:
        assert await _refused(port, context)
        assert gate.upstream.sandbox.received == []


async def test_hostile_calls_are_refused_over_tls_as_over_plain_http(
    start_gate: StartGate, authority: Authority
) -> None:
    """§2 over TLS: an encoded slash is 400 AmbiguousPath, a huge head 431, an unconfirmed
    order 403 blocked; none of them is forwarded."""
    gate = await start_gate(server={**authority.issue().settings(), "max_header_bytes": 1024})
    port, context = gate.client.server.port, authority.client_context()
    body = json.dumps(order()).encode()
    async with _tls(port, context) as conn:
        slash = await _ask(conn, _post(f"/v1/customers/{CUSTOMER}%2Forders", body))
    async with _tls(port, context) as conn:
        padding = "".join(f"X-Pad-{i}: {'a' * 100}\r\n" for i in range(20))
        huge = await _ask(conn, _get(extra=padding))
    async with _tls(port, context) as conn:
        blocked = await _ask(conn, _post(orders_path(), body))
    assert slash is not None and huge is not None and blocked is not None
    assert (slash.status, json.loads(slash.body)["errorName"]) == (400, "AmbiguousPath")
    assert (huge.status, json.loads(huge.body)["errorName"]) == (431, "RequestHeaderFieldsTooLarge")
    assert (blocked.status, json.loads(blocked.body)["code"]) == (403, 13605)
    assert blocked.headers["X-Gate-Decision"] == "blocked"
    paths = [r.path for r in gate.upstream.sandbox.received]
    assert paths == [  # the lookups (agreements, then the direct status), nothing forwarded
        f"/v1/customers/{CUSTOMER}/agreements",
        f"/v1/customers/{CUSTOMER}/directSignedMicrosoftCustomerAgreementStatus",
    ]


async def test_reload_rotates_the_proxy_certificate_in_process(
    serve_app: ServeApp, upstream: Upstream, authority: Authority, tmp_path: Path
) -> None:
    """§5 reload on asyncio's loop: files replaced in place serve new connections; an open
    keep-alive connection goes on with the certificate it shook hands with."""
    old, new = authority.issue(), authority.issue()
    live = Pair(tmp_path / "live.crt", tmp_path / "live.key", old.leaf)
    live.write_over(old)
    config = tmp_path / "gate.toml"
    config.write_text(f'[server]\n{live.toml()}[upstream]\nurl = "{upstream.url}"\n')
    app = create_app(load(config), log_stream=io.StringIO(), config_path=str(config))
    port = (await serve_app(app)).server.port
    context = authority.client_context()
    async with _tls(port, context) as before:
        assert (await _ask(before, _get())) is not None
        live.write_over(new)
        assert admin.reload(app) == []
        async with _tls(port, context) as after:
            assert peer_serial(_ssl_object(after)) == new.serial
            answered = await _ask(after, _get())
            assert answered is not None and answered.status == 200
        again = await _ask(before, _get())  # the same connection, still open
        assert again is not None and again.status == 200
        assert peer_serial(_ssl_object(before)) == old.serial


# -- `gate serve` processes (uvloop's TLS) ------------------------------------------------------

ServeTls = Callable[..., Awaitable[Served]]


async def _wait_ready(served: Served, context: ssl.SSLContext | None) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(_BOUND_S):
        while True:
            if served.process.returncode is not None:
                raise AssertionError(f"gate serve exited early: {served.stderr.read_text()}")
            try:
                async with session.get(f"{served.admin_url}/readyz", ssl=context or True) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


@pytest.fixture
async def serve_tls(upstream: Upstream, tmp_path: Path) -> AsyncIterator[ServeTls]:
    """`gate serve` with TLS keys in [server]/[admin]; every child is killed by PID after."""
    started: list[Served] = []

    async def start(
        server: str = "", admin: str = "", extra: str = "", admin_ssl: ssl.SSLContext | None = None
    ) -> Served:
        proxy_port, admin_port = free_port(), free_port()
        index = len(started)
        config = tmp_path / f"tls-{index}.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{proxy_port}"\nshutdown_grace_s = 1\n{server}'
            f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n{admin}'
            f'[upstream]\nurl = "{upstream.url}"\n{extra}'
        )
        stdout, stderr = tmp_path / f"tls-{index}.out", tmp_path / f"tls-{index}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                *GATE_COMMAND, "serve", "--config", str(config),
                stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        scheme = "https" if admin_ssl is not None else "http"
        served = Served(
            process, config, stdout, stderr,
            f"https://127.0.0.1:{proxy_port}", f"{scheme}://127.0.0.1:{admin_port}",
        )  # fmt: skip
        started.append(served)
        await _wait_ready(served, admin_ssl)
        return served

    yield start
    for served in started:
        served.stop()
        await served.process.wait()


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


async def _admin(
    served: Served, method: str, path: str, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{served.admin_url}{path}", ssl=context or True) as response,
    ):
        return response.status, await response.text()


async def test_sighup_rotates_and_a_bad_pair_is_refused_on_uvloop(
    serve_tls: ServeTls, authority: Authority, tmp_path: Path
) -> None:
    """§5 rotation under `gate serve`: SIGHUP serves the replaced files to new connections while
    an open one keeps its certificate; a changed path is taken live; a mismatched pair is
    refused by POST /admin/reload (400, counted as an error) and the old pair serves on; the
    expiry gauge always equals the served certificate's notAfter."""
    first, second, third = (authority.issue(days=d) for d in (10, 20, 30))
    live = Pair(tmp_path / "live.crt", tmp_path / "live.key", first.leaf)
    live.write_over(first)
    served = await serve_tls(server=live.toml())
    port, context = _port(served.proxy_url), authority.client_context()
    async with _tls(port, context) as before:
        assert peer_serial(_ssl_object(before)) == first.serial
        assert (await _ask(before, _get())) is not None
        live.write_over(second)
        served.signal(signal.SIGHUP)
        await served.wait_for_output('"reloaded"')
        async with _tls(port, context) as after:
            assert peer_serial(_ssl_object(after)) == second.serial
        again = await _ask(before, _get())
        assert again is not None and again.status == 200
        assert peer_serial(_ssl_object(before)) == first.serial
    _, text = await _admin(served, "GET", "/metrics")
    assert metric(text, _EXPIRY, listener="proxy") == second.not_after

    served.config.write_text(served.config.read_text().replace(live.toml(), third.toml()))
    status, body = await _admin(served, "POST", "/admin/reload")
    assert (status, json.loads(body)) == (200, {"status": "reloaded"})
    async with _tls(port, context) as conn:
        assert peer_serial(_ssl_object(conn)) == third.serial

    mismatched = Pair(third.cert, first.key, third.leaf)
    served.config.write_text(served.config.read_text().replace(third.toml(), mismatched.toml()))
    status, body = await _admin(served, "POST", "/admin/reload")
    assert status == 400
    (problem,) = json.loads(body)["problems"]
    assert problem.startswith(f"server.tls_key_file: {first.key}: does not match"), problem
    async with _tls(port, context) as conn:
        assert peer_serial(_ssl_object(conn)) == third.serial
        response = await _ask(conn, _get())
        assert response is not None and response.status == 200
    _, text = await _admin(served, "GET", "/metrics")
    assert metric(text, _EXPIRY, listener="proxy") == third.not_after
    assert metric(text, "gate_config_reloads_total", result="error") == 1
    assert metric(text, "gate_config_reloads_total", result="ok") == 2


async def test_admin_and_authz_listeners_speak_tls_with_their_own_pairs(
    serve_tls: ServeTls, authority: Authority
) -> None:
    """§3 admin.tls_* and authz.tls_*: each listener serves its own pair, exports its expiry,
    and refuses plain HTTP; the proxy stays plain when [server] sets no TLS keys."""
    admin_pair, authz_pair = authority.issue(days=40), authority.issue(days=50)
    authz_port = free_port()
    context = authority.client_context()
    served = await serve_tls(
        admin=admin_pair.toml(),
        extra=f'[authz]\nlisten = "127.0.0.1:{authz_port}"\n{authz_pair.toml()}',
        admin_ssl=context,
    )
    status, text = await _admin(served, "GET", "/metrics", context)
    assert status == 200
    assert metric(text, _EXPIRY, listener="admin") == admin_pair.not_after
    assert metric(text, _EXPIRY, listener="authz") == authz_pair.not_after
    assert f'{_EXPIRY}{{listener="proxy"}}' not in text  # a plain listener has no certificate
    async with _tls(authz_port, context) as conn:
        assert peer_serial(_ssl_object(conn)) == authz_pair.serial
        check = await _ask(conn, _get())
    assert check is not None and check.status == 200
    assert await exchange(_port(served.admin_url), _get()) == []
    plain = await exchange(_port(served.proxy_url), _get())
    assert [r.status for r in plain] == [200]


async def _run_gate(*args: str) -> tuple[int, str]:
    """Run the gate command to its end (bounded; killed by PID if it overstays)."""
    process = await asyncio.create_subprocess_exec(
        *GATE_COMMAND, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(_BOUND_S):
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_serve_and_check_config_name_the_key_and_the_reason(
    authority: Authority, tmp_path: Path, upstream: Upstream
) -> None:
    """§4 an expired certificate stops `gate serve` before it listens, a mismatched key fails
    `gate check-config`; both name the key and why. A certificate without its key names both."""
    expired, good, other = authority.issue(days=-1, ago=2), authority.issue(), authority.issue()
    port = free_port()
    config = tmp_path / "expired.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n{expired.toml()}'
        f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n[upstream]\nurl = "{upstream.url}"\n'
    )
    code, err = await _run_gate("serve", "--config", str(config))
    assert code != 0
    assert f"server.tls_cert_file: {expired.cert}: the certificate expired at " in err
    mismatched = tmp_path / "mismatched.toml"
    mismatched.write_text(f"[admin]\n{Pair(good.cert, other.key, good.leaf).toml()}")
    code, err = await _run_gate("check-config", str(mismatched))
    assert code == 1
    assert err.strip() == (
        f"{mismatched}: admin.tls_key_file: {other.key}: "
        "does not match the certificate of admin.tls_cert_file"
    )
    half = tmp_path / "half.toml"
    half.write_text(f'[server]\ntls_cert_file = "{good.cert}"\n')
    code, err = await _run_gate("check-config", str(half))
    assert code == 1
    assert "server: tls_cert_file and tls_key_file go together" in err
    assert "tls_key_file is empty" in err


async def test_workers_serve_and_rotate_tls_as_one_gate(
    serve_tls: ServeTls, authority: Authority, tmp_path: Path
) -> None:
    """§5 workers: every worker serves the proxy pair and the parent the admin pair; a reload
    rotates both; /metrics shows each expiry once (the earliest over workers, never a sum)."""
    proxy_pair, admin_pair = authority.issue(days=10), authority.issue(days=11)
    proxy_new, admin_new = authority.issue(days=20), authority.issue(days=21)
    proxy_live = Pair(tmp_path / "proxy.crt", tmp_path / "proxy.key", proxy_pair.leaf)
    admin_live = Pair(tmp_path / "admin.crt", tmp_path / "admin.key", admin_pair.leaf)
    proxy_live.write_over(proxy_pair)
    admin_live.write_over(admin_pair)
    context = authority.client_context()
    served = await serve_tls(
        server="workers = 2\n" + proxy_live.toml(), admin=admin_live.toml(), admin_ssl=context
    )
    _, text = await _admin(served, "GET", "/metrics", context)
    assert metric(text, _EXPIRY, listener="proxy") == proxy_pair.not_after
    assert metric(text, _EXPIRY, listener="admin") == admin_pair.not_after
    proxy_live.write_over(proxy_new)
    admin_live.write_over(admin_new)
    status, body = await _admin(served, "POST", "/admin/reload", context)
    assert (status, json.loads(body)) == (200, {"status": "reloaded"})
    _, text = await _admin(served, "GET", "/metrics", context)
    assert metric(text, _EXPIRY, listener="proxy") == proxy_new.not_after
    assert metric(text, _EXPIRY, listener="admin") == admin_new.not_after
    serials = set()
    for _ in range(8):  # SO_REUSEPORT spreads new connections over the workers
        async with _tls(_port(served.proxy_url), context) as conn:
            serials.add(peer_serial(_ssl_object(conn)))
    assert serials == {proxy_new.serial}
