"""DESIGN §5 workers: `server.workers = 2` is one gate to an operator, and outlives a worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Upstream
from tests.contract.conftest import Served, ServeGate, free_port, serve_toml
from tests.contract.test_serve import _run_serve
from tests.support import (
    BUILD,
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    metric,
    order,
    orders_path,
)

_TWO = "workers = 2\n"


async def _workers(served: Served, count: int = 2) -> set[int]:
    async with asyncio.timeout(20):
        while len(served.worker_pids()) < count:  # noqa: ASYNC110 - a log file has no event
            await asyncio.sleep(0.02)
    return served.worker_pids()


async def _fresh(served: Served, method: str, path: str, **kwargs: object) -> tuple[int, str]:
    """One call on a new connection (SO_REUSEPORT spreads new connections over the workers)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, f"{served.proxy_url}{path}", **kwargs) as response,  # type: ignore[arg-type]
    ):
        await response.read()
        return response.status, response.headers.get("X-Gate-Decision", "")


async def _admin(served: Served, method: str, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{served.admin_url}{path}") as response,
    ):
        return response.status, await response.text()


async def test_metrics_are_the_sum_over_every_worker(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§5: one admin listener; /metrics counts every worker's decisions, not just one's."""
    served = await serve_gate(server=_TWO)
    await _workers(served)
    for _ in range(20):
        assert await _fresh(served, "POST", orders_path(), json=order(), headers=auth()) == (
            403,
            "blocked",
        )
    _, text = await _admin(served, "GET", "/metrics")
    assert (
        metric(text, "gate_decisions_total", transaction="new_purchase", decision="blocked") == 20
    )
    assert metric(text, "gate_worker_restarts_total") == 0
    served_by = {line for line in served.output().splitlines() if '"decision"' in line}
    assert len(served_by) == 20


async def test_a_killed_worker_is_started_again_and_the_port_keeps_serving(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§5: a worker that dies is restarted (counted), and calls are answered meanwhile."""
    served = await serve_gate(server=_TWO)
    before = await _workers(served)
    os.kill(min(before), signal.SIGKILL)
    for _ in range(10):  # the other worker answers while the parent restarts the dead one
        status, _ = await _fresh(served, "GET", "/v1/customers")
        assert status == 200
    after = await _workers(served, 3)
    assert len(after - before) == 1
    async with asyncio.timeout(20):
        while True:
            _, text = await _admin(served, "GET", "/metrics")
            if metric(text, "gate_worker_restarts_total") == 1:
                break
            await asyncio.sleep(0.05)
    assert (await _admin(served, "GET", "/readyz"))[0] == 200
    served.signal(signal.SIGTERM)
    assert await served.wait_exit() == 0


async def test_a_confirmation_through_one_worker_is_known_to_every_worker(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """R5 + §5: a confirmation made through one worker lets orders pass on all, no lookup."""
    served = await serve_gate(server=_TWO)
    await _workers(served)
    status, _ = await _fresh(served, "POST", agreements_path(), json=confirmation(), headers=auth())
    assert status == 201
    async with asyncio.timeout(10):  # told to the other worker over the control channel
        while True:
            _, text = await _admin(served, "GET", "/metrics")
            if metric(text, "gate_acceptance_cache_entries") == 2:  # one pair, two workers
                break
            await asyncio.sleep(0.02)
    lookups = len(upstream.sandbox.calls("GET", "/agreements"))
    for _ in range(16):
        assert await _fresh(served, "POST", orders_path(), json=order(), headers=auth()) == (
            201,
            "allowed",
        )
    assert len(upstream.sandbox.calls("GET", "/agreements")) == lookups  # every worker knew


async def test_an_admin_drop_reaches_every_worker(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§5 DELETE /admin/acceptance: the pair is dropped from every worker's cache at once."""
    served = await serve_gate(server=_TWO)
    await _workers(served)
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    for _ in range(16):  # both workers look the pair up and cache it
        assert (await _fresh(served, "POST", orders_path(), json=order(), headers=auth()))[0] == 201
    pair = f"/admin/acceptance/{PARTNER_A}/{CUSTOMER}"
    status, body = await _admin(served, "GET", pair)
    assert status == 200 and '"accepted"' in body
    assert (await _admin(served, "DELETE", pair))[0] == 204
    assert (await _admin(served, "GET", pair))[0] == 404  # asked of every worker
    assert (await _admin(served, "DELETE", pair))[0] == 404


async def test_a_worker_that_cannot_bind_stops_the_gate_with_its_reason(
    tmp_path: Path, upstream: Upstream
) -> None:
    """§5: when a worker cannot start at all, the gate exits non-zero and says why."""
    with socket.socket() as taken:  # held without SO_REUSEPORT: no worker can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proxy_port = taken.getsockname()[1]
        config = tmp_path / "gate.toml"
        config.write_text(serve_toml(upstream.url, proxy_port, free_port(), server=_TWO))
        code, stderr = await _run_serve(config)
    assert code != 0
    assert "cannot listen" in stderr
    assert "could not start" in stderr


async def test_a_single_process_exports_worker_restarts_at_zero(serve_gate: ServeGate) -> None:
    """§5: gate_worker_restarts_total exists (at 0) without workers too: no panel or alert rule
    reads a series that is missing."""
    served = await serve_gate()
    _, text = await _admin(served, "GET", "/metrics")
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gate_worker_restarts_total"
    ]
    assert [(sample.labels, sample.value) for sample in samples] == [({}, 0.0)]


async def test_merged_metrics_have_the_families_of_one_process(serve_gate: ServeGate) -> None:
    """§5: two workers' /metrics lists what one process does, less the ``_created`` stamps,
    and no family is left empty (HELP and TYPE with no series) that one process fills."""
    alone = await serve_gate()
    _, text = await _admin(alone, "GET", "/metrics")
    single = {family.name: family for family in text_string_to_metric_families(text)}
    two = await serve_gate(server=_TWO)
    await _workers(two)
    _, text = await _admin(two, "GET", "/metrics")
    merged = {family.name: family for family in text_string_to_metric_families(text)}
    stamps = {name for name in single if name.endswith("_created")}
    assert "gate_worker_restarts_created" in stamps
    assert set(merged) == set(single) - stamps
    empty = {name for name, family in merged.items() if not family.samples}
    assert empty <= {name for name, family in single.items() if not family.samples}


async def test_workers_run_the_installed_gate_whatever_the_directory(
    serve_gate: ServeGate, tmp_path: Path
) -> None:
    """A worker is `python -m gate`: a gate/ folder where the gate was started (a checkout, say)
    must not be what it imports instead of the installed (compiled) gate the parent runs."""
    decoy = tmp_path / "here" / "gate"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("", encoding="utf-8")
    (decoy / "__main__.py").write_text("raise SystemExit('the decoy gate')\n", encoding="utf-8")
    served = await serve_gate(server=_TWO, cwd=decoy.parent)
    assert len(await _workers(served)) == 2
    _, text = await _admin(served, "GET", "/metrics")
    assert f'gate_build_info{{build="{BUILD}"' in text
    assert "decoy" not in served.output() + served.stderr.read_text(encoding="utf-8")
    served.signal(signal.SIGTERM)
    assert await served.wait_exit() == 0
