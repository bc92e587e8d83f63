"""gate.pipeline: a request's whole path, route -> body -> decide -> forward or answer -> log.

``Pipeline.start`` is the front door's handler here, its requests fed through
a fake client socket (tests/http/fake_transport.py); everything behind it is
real: the Decider, an AcceptanceStore and an UpstreamPool talking to the
sandbox Partner Center on a loopback port, Metrics, and decision lines
written to a stream the test reads.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import generate_latest

from gate import __version__
from gate.acceptance import AcceptanceStore
from gate.core.decide import Decider
from gate.core.policy import State
from gate.http.protocol import ProxyProtocol
from gate.http.server import FrontDoor
from gate.http.upstream import UpstreamPool
from gate.logs import HotLines, make_logger
from gate.metrics import Metrics
from gate.pipeline import Pipeline
from gate.runtime import RuntimeHolder, compile_settings
from tests.conftest import MakeSettings, Upstream
from tests.http.fake_transport import FakeTransport, Written, answers, connect, make_door
from tests.support import (
    CONTACT_EMAIL,
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    decisions,
    log_lines,
    metric,
    order,
    orders_path,
)

_BOUND_S = 10.0


@dataclass
class Proxy:
    """A pipeline behind a never-listening front door, and what it is made of."""

    door: FrontDoor
    store: AcceptanceStore
    metrics: Metrics
    logs: io.StringIO
    upstream: Upstream

    def connect(self) -> tuple[ProxyProtocol, FakeTransport]:
        return connect(self.door)

    def counted(self, verdict: str, kind: str = "new_purchase") -> float:
        text = generate_latest(self.metrics.registry).decode()
        return metric(text, "gate_decisions_total", transaction=kind, decision=verdict)


StartProxy = Callable[..., Proxy]


@pytest.fixture
async def start_proxy(upstream: Upstream, make_settings: MakeSettings) -> AsyncIterator[StartProxy]:
    """Build pipelines in front of the sandbox; their stores, pools and doors are closed after."""
    made: list[tuple[Proxy, UpstreamPool]] = []

    def start(**sections: dict[str, Any]) -> Proxy:
        settings = make_settings(**sections)
        runtime = compile_settings(settings)
        metrics, logs = Metrics(__version__), io.StringIO()
        pool = UpstreamPool(runtime.upstream, limit=8, connect_timeout=2, read_timeout=5)
        store = AcceptanceStore(settings.acceptance, pool, runtime.upstream_prefix, metrics)
        decider = Decider(RuntimeHolder(runtime), store, store.read_subscription)
        lines = HotLines("info", "json", logs, make_logger("info", "json", logs))
        pipeline = Pipeline(decider, pool, store, metrics, lines)
        proxy = Proxy(make_door(pipeline.start), store, metrics, logs, upstream)
        made.append((proxy, pool))
        return proxy

    yield start
    for proxy, pool in made:
        await proxy.door.drain(0)
        await proxy.store.close()
        pool.close()


def request(method: str, target: str, body: bytes = b"", **headers: str) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PATCH") else ""
    return f"{method} {target} HTTP/1.1\r\nHost: gate\r\n{lines}{length}\r\n".encode() + body


def post_json(target: str, doc: Any, **headers: str) -> bytes:
    body = json.dumps(doc).encode()
    return request("POST", target, body, **{"Content-Type": "application/json", **headers})


async def answered(transport: FakeTransport, count: int = 1) -> list[Written]:
    """The first ``count`` answers the client got (bounded wait)."""
    async with asyncio.timeout(_BOUND_S):
        while len(found := answers(transport.written)) < count:
            transport.wrote.clear()
            await transport.wrote.wait()
    return found


async def logged(logs: io.StringIO, count: int = 1) -> list[dict[str, Any]]:
    """The decision lines, once ``count`` are written (a line may follow the answer)."""
    async with asyncio.timeout(_BOUND_S):
        while len(found := decisions(logs)) < count:  # noqa: ASYNC110 - a stream has no event
            await asyncio.sleep(0.01)
    return found


async def test_a_read_is_streamed_through_with_no_decision(start_proxy: StartProxy) -> None:
    """§2 pass-through: forwarded as sent, answered as the upstream answered, nothing logged."""
    proxy = start_proxy()
    protocol, transport = proxy.connect()
    protocol.data_received(request("GET", "/v1/customers?size=5", **{"MS-CorrelationId": "c-1"}))
    [got] = await answered(transport)
    assert got.status == 200
    assert got.header(b"X-Gate-Decision") is None
    [sent] = proxy.upstream.sandbox.calls("GET", "/v1/customers")
    assert (sent.query_string, sent.headers["MS-CorrelationId"]) == ("size=5", "c-1")
    assert log_lines(proxy.logs) == []


async def test_a_cached_accepted_order_is_forwarded_allowed(start_proxy: StartProxy) -> None:
    """R3: a confirmed pair's order goes upstream as sent, flagged allowed; one line, one count."""
    proxy = start_proxy()
    proxy.store.record(PARTNER_A, CUSTOMER)
    protocol, transport = proxy.connect()
    protocol.data_received(post_json(orders_path(), order(), **auth()))
    [got] = await answered(transport)
    assert (got.status, got.header(b"X-Gate-Decision")) == (201, b"allowed")
    [sent] = proxy.upstream.sandbox.calls("POST", "/orders")
    assert sent.json() == order()
    [line] = await logged(proxy.logs)
    assert (line["decision"], line["cache"], line["status"]) == ("allowed", "hit", 201)
    assert proxy.counted("allowed") == 1
    assert proxy.upstream.sandbox.calls("GET", "/agreements") == []  # no lookup


async def test_an_unconfirmed_order_is_looked_up_and_refused(start_proxy: StartProxy) -> None:
    """R1/R3: a miss asks the upstream; not accepted: 403 13605, and the order never leaves."""
    proxy = start_proxy()
    protocol, transport = proxy.connect()
    protocol.data_received(post_json(orders_path(), order(), **auth()))
    [got] = await answered(transport)
    assert (got.status, got.header(b"X-Gate-Decision")) == (403, b"blocked")
    assert json.loads(got.body)["code"] == 13605
    assert proxy.upstream.sandbox.calls("POST", "/orders") == []
    assert len(proxy.upstream.sandbox.calls("GET", "/agreements")) == 1
    [line] = await logged(proxy.logs)
    assert (line["decision"], line["reason"], line["cache"]) == ("blocked", "not_accepted", "miss")
    assert proxy.counted("blocked") == 1


async def test_a_confirmation_that_went_through_is_recorded(start_proxy: StartProxy) -> None:
    """R5: the upstream's 201 to a confirmation makes the pair accepted, the line says so."""
    proxy = start_proxy()
    protocol, transport = proxy.connect()
    protocol.data_received(post_json(agreements_path(), confirmation(), **auth()))
    [got] = await answered(transport)
    assert (got.status, got.header(b"X-Gate-Decision")) == (201, b"allowed")
    hit = proxy.store.peek(PARTNER_A, CUSTOMER)
    assert hit is not None and (hit.state, hit.source) == (State.ACCEPTED, "confirmation")
    [line] = await logged(proxy.logs)
    assert (line["transaction"], line["reason"]) == ("confirmation", "confirmation")
    assert CONTACT_EMAIL not in proxy.logs.getvalue()


async def test_a_refused_confirmation_records_nothing(start_proxy: StartProxy) -> None:
    """R5: an upstream refusal of the confirmation proves nothing: the pair stays unknown."""
    proxy = start_proxy()
    proxy.upstream.sandbox.knobs.confirm_status = 400
    protocol, transport = proxy.connect()
    protocol.data_received(post_json(agreements_path(), confirmation(), **auth()))
    [got] = await answered(transport)
    assert got.status == 400
    assert proxy.store.peek(PARTNER_A, CUSTOMER) is None
    [line] = await logged(proxy.logs)
    assert (line["decision"], line["status"]) == ("allowed", 400)


async def test_a_gated_body_over_the_limit_is_refused_413(start_proxy: StartProxy) -> None:
    """§2: a gated body over max_gated_body_bytes is never read whole: 413, blocked, logged."""
    proxy = start_proxy(server={"max_gated_body_bytes": 1024})
    protocol, transport = proxy.connect()
    big = {"lineItems": [{"offerId": "x" * 2000, "quantity": 1}]}
    protocol.data_received(post_json(orders_path(), big, **auth()))
    [got] = await answered(transport)
    assert (got.status, got.header(b"X-Gate-Decision")) == (413, b"blocked")
    assert json.loads(got.body)["errorName"] == "BodyTooLarge"
    [line] = await logged(proxy.logs)
    assert (line["decision"], line["status"], line["error"]) == ("blocked", 413, "BodyTooLarge")


async def test_a_gated_call_whose_client_left_mid_body_is_logged_499(
    start_proxy: StartProxy,
) -> None:
    """§4: the client left before its body was in: nothing sent upstream, a 499 client_gone line."""
    proxy = start_proxy()
    protocol, transport = proxy.connect()
    head = request("POST", orders_path(), **auth())
    protocol.data_received(head.replace(b"Content-Length: 0", b"Content-Length: 100") + b"{")
    transport.close()
    [line] = await logged(proxy.logs)
    assert (line["status"], line["decision"], line["reason"]) == (499, "blocked", "client_gone")
    assert proxy.upstream.sandbox.calls("POST", "/orders") == []


async def test_a_gated_call_whose_client_left_during_the_lookup_is_not_sent(
    start_proxy: StartProxy,
) -> None:
    """An order whose caller gave up while it was decided is never placed (it may retry)."""
    proxy = start_proxy()
    proxy.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    proxy.upstream.sandbox.knobs.agreements_delay_s = 0.2  # the lookup is out when the client goes
    protocol, transport = proxy.connect()
    protocol.data_received(post_json(orders_path(), order(), **auth()))
    async with asyncio.timeout(_BOUND_S):
        while not proxy.upstream.sandbox.calls("GET", "/agreements"):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    transport.close()
    [line] = await logged(proxy.logs)
    assert (line["status"], line["decision"], line["reason"]) == (499, "blocked", "client_gone")
    assert proxy.upstream.sandbox.calls("POST", "/orders") == []
    assert transport.writes == []


async def test_an_unreachable_upstream_is_a_502_for_a_read(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    """§2: the upstream cannot be reached: 502 UpstreamUnavailable in the gate's shape."""
    proxy = start_proxy()
    await upstream.server.close()
    protocol, transport = proxy.connect()
    protocol.data_received(request("GET", "/v1/customers"))
    [got] = await answered(transport)
    assert (got.status, json.loads(got.body)["errorName"]) == (502, "UpstreamUnavailable")
