"""DESIGN §4 `gate serve` and §5 signals: the real process, on loopback, stopped by PID."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Upstream
from tests.contract.conftest import Served, ServeGate, exchange, free_port, serve_toml
from tests.support import CONTACT_EMAIL, GATE_COMMAND, auth, order, orders_path


async def _order(served: Served) -> tuple[int, str | None, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{served.proxy_url}{orders_path()}", json=order(), headers=auth()) as r,
    ):
        body = await r.json()
        return r.status, r.headers.get("X-Gate-Decision"), body.get("errorName", "")


async def test_serve_blocks_an_unconfirmed_order(serve_gate: ServeGate, upstream: Upstream) -> None:
    """R1 via §4: `gate serve` answers an unconfirmed order 403 blocked and forwards nothing."""
    served = await serve_gate()
    status, decision, error = await _order(served)
    assert (status, decision, error) == (403, "blocked", "CustomerAcceptanceRequired")
    assert upstream.sandbox.calls("POST", "/orders") == []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{served.proxy_url}/v1/customers?x=1") as response:
            assert response.status == 200
            assert "X-Gate-Decision" not in response.headers
        async with session.get(f"{served.admin_url}/healthz") as response:
            assert response.status == 200


async def _wait_received(upstream: Upstream, count: int) -> None:
    async with asyncio.timeout(20):
        while len(upstream.sandbox.received) < count:  # noqa: ASYNC110 - a list has no event
            await asyncio.sleep(0.01)


async def test_sigterm_finishes_in_flight_calls_then_exits_0(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§5: on SIGTERM the gate stops accepting, lets an in-flight call finish, and exits 0."""
    served = await serve_gate()
    upstream.sandbox.knobs.delay_s = 2.0
    async with aiohttp.ClientSession() as session:

        async def slow_call() -> tuple[int, bytes]:
            async with session.get(f"{served.proxy_url}/v1/customers/slow/profiles") as response:
                return response.status, await response.read()

        call = asyncio.ensure_future(slow_call())
        await _wait_received(upstream, 1)  # the call is at the upstream: in flight
        served.signal(signal.SIGTERM)
        await served.wait_for_output('"draining"')
        async with session.get(f"{served.admin_url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "draining"
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:  # a new connection: not accepted
                await fresh.get(f"{served.proxy_url}/v1/customers/late")
        status, body = await call
    assert status == 200
    assert b'"/v1/customers/slow/profiles"' in body
    assert await served.wait_exit() == 0
    assert '"stopped"' in served.output()
    assert len(upstream.sandbox.received) == 1


async def test_sighup_reloads_a_changed_config(serve_gate: ServeGate, upstream: Upstream) -> None:
    """§5: SIGHUP with a changed file swaps the config in; orders become would-block."""
    served = await serve_gate()
    assert (await _order(served))[:2] == (403, "blocked")
    served.config.write_text(served.config.read_text() + '[policy]\nmode = "observe"\n')
    served.signal(signal.SIGHUP)
    await served.wait_for_output('"reloaded"')
    status, decision, _ = await _order(served)
    assert (status, decision) == (201, "would-block")
    assert len(upstream.sandbox.calls("POST", "/orders")) == 1


async def test_sighup_with_a_broken_file_keeps_the_running_config(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§5: SIGHUP with a bad file is refused and logged (reload_refused); the old config runs on."""
    served = await serve_gate()
    good = served.config.read_text()
    for broken in ('[policy]\nmode = "sometimes"\n', "[policy\nmode = "):
        served.config.write_text(good + broken)
        before = served.output().count('"reload_refused"')
        served.signal(signal.SIGHUP)
        async with asyncio.timeout(20):
            while served.output().count('"reload_refused"') == before:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert (await _order(served))[:2] == (403, "blocked")
    assert upstream.sandbox.calls("POST", "/orders") == []
    assert served.process.returncode is None


async def _run_serve(config: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *GATE_COMMAND, "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_bad_config_exits_2_naming_the_key(tmp_path: Path, upstream: Upstream) -> None:
    """§3/§4: `gate serve` with an invalid config exits 2 and names each bad key on stderr."""
    config = tmp_path / "bad.toml"
    config.write_text(
        serve_toml(upstream.url, free_port(), free_port())
        + 'read_timeout_s = -1\n[policy]\nmode = "sometimes"\n'
    )
    code, stderr = await _run_serve(config)
    assert code == 2, stderr
    assert "upstream.read_timeout_s" in stderr
    assert "policy.mode" in stderr
    assert "Traceback" not in stderr


async def test_unknown_key_exits_2_naming_it(tmp_path: Path, upstream: Upstream) -> None:
    """§3/§4: a key the config does not know is an error that names it, not silently ignored."""
    config = tmp_path / "typo.toml"
    config.write_text(
        serve_toml(upstream.url, free_port(), free_port()).replace(
            "shutdown_grace_s", "shutdown_grace_sec"
        )
    )
    code, stderr = await _run_serve(config)
    assert code == 2, stderr
    assert "server.shutdown_grace_sec" in stderr


async def test_workers_share_the_port_and_stop_on_sigterm(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§3 server.workers: N processes share one port and gate; SIGHUP and SIGTERM reach each."""
    served = await serve_gate(server="workers = 2\n")
    async with asyncio.timeout(20):
        while len(served.worker_pids()) < 2:  # noqa: ASYNC110 - a log file has no event
            await asyncio.sleep(0.02)
    workers = served.worker_pids()
    assert served.pid not in workers
    for _ in range(4):
        assert (await _order(served))[:2] == (403, "blocked")
    assert upstream.sandbox.calls("POST", "/orders") == []
    served.config.write_text(served.config.read_text() + '[policy]\nmode = "observe"\n')
    served.signal(signal.SIGHUP)  # relayed by the parent to every worker
    async with asyncio.timeout(20):
        while served.output().count('"reloaded"') < 2:  # noqa: ASYNC110 - a log file
            await asyncio.sleep(0.02)
    for _ in range(4):
        assert (await _order(served))[:2] == (201, "would-block")
    served.signal(signal.SIGTERM)
    assert await served.wait_exit() == 0
    assert served.output().count('"stopped"') == 2
    assert not any(_alive(pid) for pid in workers)  # each worker exited and was reaped


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_malformed_requests_never_put_tokens_or_contacts_in_the_logs(
    serve_gate: ServeGate,
) -> None:
    """§5 logs: a malformed request is answered 400 and logged by its kind, never its bytes."""
    served = await serve_gate()
    token = auth()["Authorization"].encode()
    port = int(served.proxy_url.rsplit(":", 1)[1])
    bad_header = (
        b"GET /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: " + token + b"\x01\r\n\r\n"
    )
    bad_chunk = (
        b"POST /v1/customers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz" + CONTACT_EMAIL.encode() + b"\r\n"
    )
    for raw in (bad_header, bad_chunk):
        [response] = await exchange(port, raw)
        assert response.status == 400
        assert json.loads(response.body)["errorName"] == "MalformedRequest"
    await served.wait_for_output("request_refused")
    served.signal(signal.SIGTERM)
    assert await served.wait_exit() == 0
    everything = served.output() + served.stderr.read_text()
    assert everything.count('"request_refused"') == 2
    assert token.decode().split(" ", 1)[1] not in everything
    assert CONTACT_EMAIL not in everything


async def test_admin_reload_reaches_every_worker(serve_gate: ServeGate) -> None:
    """§5 POST /admin/reload with workers: the parent relays it to every worker."""
    served = await serve_gate(server="workers = 2\n")
    async with asyncio.timeout(20):
        while len(served.worker_pids()) < 2:  # noqa: ASYNC110 - a log file has no event
            await asyncio.sleep(0.02)
    served.config.write_text(served.config.read_text() + '[policy]\nmode = "observe"\n')
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{served.admin_url}/admin/reload") as response,
    ):
        assert response.status == 200  # answered once every worker applied it
        assert (await response.json())["status"] == "reloaded"
    async with asyncio.timeout(20):
        while served.output().count('"reloaded"') < 2:  # noqa: ASYNC110 - a log file
            await asyncio.sleep(0.02)
    for _ in range(6):  # new connections land on either worker
        assert (await _order(served))[:2] == (201, "would-block")


async def test_a_worker_that_cannot_start_stops_the_rest(
    tmp_path: Path, upstream: Upstream
) -> None:
    """§3 server.workers: if the admin port is taken, the gate exits non-zero, no half-service."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin_port = taken.getsockname()[1]
        config = tmp_path / "gate.toml"
        config.write_text(serve_toml(upstream.url, free_port(), admin_port, server="workers = 2\n"))
        code, stderr = await _run_serve(config)
    assert code != 0
    assert "cannot listen" in stderr


async def test_admin_reload_with_workers_refuses_a_bad_file(serve_gate: ServeGate) -> None:
    """§5: with workers, POST /admin/reload still answers 400 with the problems of a bad file."""
    served = await serve_gate(server="workers = 2\n")
    served.config.write_text(served.config.read_text() + '[policy]\nmode = "sometimes"\n')
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{served.admin_url}/admin/reload") as response,
    ):
        assert response.status == 400
        assert any("policy.mode" in p for p in (await response.json())["problems"])
