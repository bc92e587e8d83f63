"""DESIGN §2/§3 the proxy front door: keep-alive, pipelining, 100-continue, framing, limits, clocks.

Raw bytes over loopback sockets, so no client library tidies anything up.
Waits are bounded generously; the gate's own clocks are configured small
(1 s) so that each rule is seen quickly, and nothing here measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from yarl import URL

from gate.sandbox import make_token
from tests.conftest import Gate, StartGate, Upstream
from tests.contract.conftest import RawResponse, ServeGate, read_response
from tests.support import CUSTOMER, PARTNER_A, decisions, order, orders_path

_BOUND_S = 10.0
_TOKEN = make_token(PARTNER_A)
_ORDER = json.dumps(order()).encode()
_BLOCK = bytes(range(256)) * 256  # what /sandbox/bytes repeats
_FAST = {"header_timeout_s": 1, "body_timeout_s": 1, "keepalive_timeout_s": 1}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _port(gate: Gate) -> int:
    port = gate.client.server.port
    assert port is not None
    return port


@asynccontextmanager
async def _connect(port: int) -> AsyncIterator[Conn]:
    """A raw loopback connection, closed after."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _response(reader: asyncio.StreamReader) -> RawResponse | None:
    """The next response, bounded; None when the connection closes first."""
    async with asyncio.timeout(_BOUND_S):
        return await read_response(reader)


async def _rest(reader: asyncio.StreamReader) -> bytes:
    """Whatever the gate still sends before it closes the connection (bounded)."""
    try:
        async with asyncio.timeout(_BOUND_S):
            return await reader.read()
    except ConnectionError:
        return b""


async def _raw_head(reader: asyncio.StreamReader) -> list[bytes]:
    """The status line and header lines of the next response, as bytes on the wire."""
    async with asyncio.timeout(_BOUND_S):
        head = await reader.readuntil(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")


def _json(response: RawResponse | None) -> Any:
    assert response is not None
    return json.loads(response.body)


def _order_head(length: int, *extra: str, token: str | None = _TOKEN) -> bytes:
    lines = [f"POST {orders_path()} HTTP/1.1", "Host: gate", "Content-Type: application/json"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _get(target: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _orders_at_sandbox(gate: Gate) -> list[bytes]:
    return [r.body for r in gate.upstream.sandbox.calls("POST", "/orders")]


def _streamed(size: int) -> bytes:
    """The body /sandbox/bytes?size=N sends."""
    return (_BLOCK * (size // len(_BLOCK) + 1))[:size]


async def _wait_for(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(_BOUND_S):
        while not check():  # noqa: ASYNC110 - a list or a log has no event to await
            await asyncio.sleep(0.02)


# -- keep-alive -----------------------------------------------------------------------


async def test_two_requests_on_one_connection_are_both_answered(gate: Gate) -> None:
    """§2 pass-through: a keep-alive connection carries one request after another."""
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get("/v1/customers?first", "Host: gate"))
        first = await _response(reader)
        await _send(writer, _get("/v1/customers?second", "Host: gate"))
        second = await _response(reader)
    assert first is not None and second is not None
    assert (first.status, second.status) == (200, 200)
    assert "close" not in first.headers.get("Connection", "").lower()
    assert _json(first)["query_string"] == "first"
    assert _json(second)["query_string"] == "second"


async def test_http10_without_host_is_answered_then_closed(gate: Gate) -> None:
    """§2 pass-through: an HTTP/1.0 request needs no Host and ends its connection by default."""
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get("/v1/customers?ten", version="1.0"))
        response = await _response(reader)
        rest = await _rest(reader)
    assert response is not None
    assert response.status == 200
    assert response.headers["Connection"].lower() == "close"
    assert _json(response)["query_string"] == "ten"
    assert rest == b""


@pytest.mark.parametrize("header", ["Connection", "Proxy-Connection"])
async def test_http10_keep_alive_is_honoured(gate: Gate, header: str) -> None:
    """§2 pass-through: HTTP/1.0 with `Connection: keep-alive` is answered so and kept open.

    llhttp also reads the older `Proxy-Connection: keep-alive`; the request stays HTTP/1.0
    (no Host needed, no chunked answer), never taken for 1.1 because it is kept alive."""
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get("/v1/customers?one", f"{header}: keep-alive", version="1.0"))
        first = await _response(reader)
        await _send(writer, _get("/v1/customers?two", f"{header}: keep-alive", version="1.0"))
        second = await _response(reader)
    assert first is not None and second is not None
    assert (first.status, second.status) == (200, 200)
    assert first.headers["Connection"].lower() == "keep-alive"
    assert "Content-Length" in first.headers  # the only way a 1.0 client sees the end
    assert _json(second)["query_string"] == "two"


@pytest.mark.parametrize(
    "hosts",
    [pytest.param((), id="no-host"), pytest.param(("Host: a", "Host: b"), id="two-hosts")],
)
async def test_http11_without_exactly_one_host_is_refused(
    gate: Gate, hosts: tuple[str, ...]
) -> None:
    """§2 framing (RFC 9112 §3.2): HTTP/1.1 without exactly one Host is 400, closed, unforwarded."""
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get("/v1/customers?nohost", *hosts))
        response = await _response(reader)
        rest = await _rest(reader)
    _assert_gate_error(response, 400, "MalformedRequest", 900106)
    assert rest == b""
    assert gate.upstream.sandbox.received == []


# -- pipelining -----------------------------------------------------------------------


async def test_pipelined_requests_with_bodies_and_streams_are_answered_in_order(
    gate: Gate,
) -> None:
    """§2 pass-through: three requests in one write (a body, a stream) are answered in order."""
    size = 100_000  # over the gate's 64 KiB buffer: relayed as a stream
    data = (
        b"POST /sandbox/upload HTTP/1.1\r\nHost: gate\r\nContent-Length: 5\r\n\r\nhello"
        + _get(f"/sandbox/bytes?size={size}", "Host: gate")
        + _get("/sandbox/status/404", "Host: gate")
    )
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, data)
        upload, stream, missing = [await _response(reader) for _ in range(3)]
    assert upload is not None and stream is not None and missing is not None
    assert (upload.status, stream.status, missing.status) == (200, 200, 404)
    assert _json(upload)["size"] == 5
    assert stream.body == _streamed(size)
    assert _json(missing) == {"status": 404}
    assert [(r.method, r.path) for r in gate.upstream.sandbox.received] == [
        ("POST", "/sandbox/upload"),
        ("GET", "/sandbox/bytes"),
        ("GET", "/sandbox/status/404"),
    ]


async def test_pipelined_request_after_a_refused_order_is_answered_after_it(gate: Gate) -> None:
    """R1 + §2: a GET pipelined behind a blocked order never overtakes its 403."""
    data = _order_head(len(_ORDER)) + _ORDER + _get("/v1/customers?after", "Host: gate")
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, data)
        first = await _response(reader)
        second = await _response(reader)
    assert first is not None
    assert first.status == 403
    assert _json(first)["errorName"] == "CustomerAcceptanceRequired"
    assert first.headers["X-Gate-Decision"] == "blocked"
    if second is not None:  # the gate may also close instead of answering the rest
        assert second.status == 200
        assert _json(second)["query_string"] == "after"
    assert _orders_at_sandbox(gate) == []


async def test_pipelined_head_held_back_by_the_gate_is_not_timed_out(
    start_gate: StartGate,
) -> None:
    """§3 header_timeout_s: a pipelined head the gate itself holds back is not timed out."""
    gate = await start_gate(server=_FAST)
    gate.upstream.sandbox.knobs.delay_s = 1.5  # each call outlasts header_timeout_s
    first_part = (
        _get("/v1/customers?one", "Host: gate")
        + _get("/v1/customers?two", "Host: gate")
        + b"GET /v1/customers?three HTTP/1.1\r\nHo"
    )
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, first_part)
        await _wait_for(lambda: len(gate.upstream.sandbox.received) == 1)
        await _send(writer, b"st: gate\r\n\r\n")  # the client finished its head promptly
        answers = [await _response(reader) for _ in range(3)]
    assert [a.status if a else None for a in answers] == [200, 200, 200]
    assert [_json(a)["query_string"] for a in answers] == ["one", "two", "three"]


# -- Expect: 100-continue ----------------------------------------------------------------


async def test_expect_continue_on_pass_through_gets_100_then_the_answer(gate: Gate) -> None:
    """§2 pass-through: `Expect: 100-continue` is answered 100 once the gate reads the body."""
    head = (
        b"POST /sandbox/upload HTTP/1.1\r\nHost: gate\r\nContent-Length: 11\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, head)
        async with asyncio.timeout(_BOUND_S):
            interim = await reader.readuntil(b"\r\n\r\n")
        await _send(writer, b"hello world")
        response = await _response(reader)
    assert interim == _CONTINUE
    assert response is not None
    assert response.status == 200
    assert _json(response)["size"] == 11
    (received,) = gate.upstream.sandbox.calls("POST", "/sandbox/upload")
    assert received.body == b"hello world"
    assert "Expect" not in received.headers  # the gate answered it; it is hop-by-hop


async def test_expect_continue_on_an_oversized_gated_order_is_413_without_100(
    start_gate: StartGate,
) -> None:
    """§2 BodyTooLarge: a gated body declared over the limit is 413 at once, no 100, closed."""
    gate = await start_gate(server={"max_gated_body_bytes": 1024})
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _order_head(5000, "Expect: 100-continue"))
        response = await _response(reader)  # a 100 first would show here as status 100
        rest = await _rest(reader)
    assert response is not None
    assert response.status == 413
    assert _json(response)["errorName"] == "BodyTooLarge"
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert response.headers["Connection"].lower() == "close"
    assert rest == b""
    assert gate.upstream.sandbox.received == []


async def test_expect_continue_then_unknown_partner_is_401_after_the_body(gate: Gate) -> None:
    """§2 PartnerUnknown: after the 100 and the body, an order with no partner is 401, unsent."""
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _order_head(len(_ORDER), "Expect: 100-continue", token=None))
        async with asyncio.timeout(_BOUND_S):
            interim = await reader.readuntil(b"\r\n\r\n")
        await _send(writer, _ORDER)
        response = await _response(reader)
    assert interim == _CONTINUE
    assert response is not None
    assert response.status == 401
    body = _json(response)
    assert (body["errorName"], body["source"]) == ("PartnerUnknown", "gate")
    assert response.headers["X-Gate-Decision"] == "blocked"
    assert gate.upstream.sandbox.received == []


# -- chunked in and out -------------------------------------------------------------------


def _chunked_order(trailers: bool) -> bytes:
    half = len(_ORDER) // 2
    first, second = _ORDER[:half], _ORDER[half:]
    head = (
        f"POST {orders_path()} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {_TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + ("Trailer: X-Checksum\r\n" if trailers else "")
        + "\r\n"
    ).encode()
    body = (
        b"%x;ext=1\r\n%s\r\n" % (len(first), first)
        + b'%x;name="quoted value"\r\n%s\r\n' % (len(second), second)
        + b"0;last\r\n"
        + (b"X-Checksum: abc\r\n" if trailers else b"")
        + b"\r\n"
    )
    return head + body


@pytest.mark.parametrize("trailers", [False, True], ids=["extensions", "extensions-trailers"])
@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "not-accepted"])
async def test_chunked_gated_order_is_decided_on_its_whole_body(
    gate: Gate, accepted: bool, trailers: bool
) -> None:
    """R1 + §2: a chunked order (extensions, trailers) is decided and forwarded with its body."""
    if accepted:
        gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _chunked_order(trailers))
        response = await _response(reader)
        await _send(writer, _get("/v1/customers?after", "Host: gate"))
        after = await _response(reader)
    assert response is not None
    if accepted:
        assert (response.status, response.headers["X-Gate-Decision"]) == (201, "allowed")
        assert _orders_at_sandbox(gate) == [_ORDER]
    else:
        assert (response.status, response.headers["X-Gate-Decision"]) == (403, "blocked")
        assert _orders_at_sandbox(gate) == []
    assert after is not None and after.status == 200  # the stream stayed in step


async def test_chunked_upload_with_trailers_passes_through(gate: Gate) -> None:
    """§2 pass-through: a chunked upload with extensions and trailers reaches the upstream whole."""
    data = (
        b"POST /sandbox/upload HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: X-Checksum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n"
        b"X-Checksum: abc\r\n\r\n"
    )
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, data)
        response = await _response(reader)
    assert response is not None
    assert response.status == 200
    (received,) = gate.upstream.sandbox.calls("POST", "/sandbox/upload")
    assert received.body == b"hello world"


async def test_chunked_upstream_answer_is_relayed_chunked_to_http11(gate: Gate) -> None:
    """§2 pass-through: a long answer of unknown length is streamed chunked to HTTP/1.1."""
    size = 200_000
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get(f"/sandbox/bytes?size={size}", "Host: gate"))
        response = await _response(reader)
    assert response is not None
    assert response.status == 200
    assert response.headers["Transfer-Encoding"].lower() == "chunked"
    assert "Content-Length" not in response.headers
    assert response.body == _streamed(size)


async def test_chunked_upstream_answer_is_close_delimited_to_http10(gate: Gate) -> None:
    """§2 pass-through: an HTTP/1.0 client gets an answer of unknown length ended by close."""
    size = 200_000
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get(f"/sandbox/bytes?size={size}", "Host: gate", version="1.0"))
        status, *lines = await _raw_head(reader)
        body = await _rest(reader)
    names = [line.partition(b":")[0].lower() for line in lines]
    assert status.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in names
    assert b"content-length" not in names
    assert b"Connection: close" in lines
    assert body == _streamed(size)


async def test_small_chunked_answer_is_reframed_with_its_length(gate: Gate) -> None:
    """§2 pass-through: a short chunked answer arrives whole, re-framed, bytes unchanged."""
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get("/sandbox/bytes?size=1000", "Host: gate", version="1.0"))
        response = await _response(reader)
    assert response is not None
    assert response.status == 200
    assert response.headers["Content-Length"] == "1000"
    assert response.body == _streamed(1000)


_H2C = (
    "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param("Content-Length: {n}\r\n\r\n{body}", id="content-length"),
        pytest.param(
            "Transfer-Encoding: chunked\r\n\r\n{n:x}\r\n{body}\r\n0\r\n\r\n", id="chunked"
        ),
    ],
)
async def test_upgrade_offer_with_a_body_is_refused_and_nothing_forwarded(
    start_gate: StartGate, framing: str
) -> None:
    """§2: llhttp skips the body of a request offering Upgrade, so such a call is refused (400)."""
    gate = await start_gate()
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    body = _ORDER.decode()
    data = (
        f"POST {orders_path()} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {_TOKEN}\r\n"
        f"Content-Type: application/json\r\n{_H2C}" + framing.format(n=len(body), body=body)
    ).encode()
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, data)
        response = await _response(reader)
        closed = await _rest(reader) == b""
    _assert_gate_error(response, 400, "MalformedRequest", 900106)
    assert closed
    assert _orders_at_sandbox(gate) == []


async def test_upgrade_offer_without_a_body_is_answered_then_closed(gate: Gate) -> None:
    """§2 (RFC 9110 §7.8): a bodiless h2c offer is answered in HTTP/1.1, then closed."""
    data = f"GET /v1/customers HTTP/1.1\r\nHost: gate\r\n{_H2C}\r\n".encode()
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, data)
        response = await _response(reader)
        closed = await _rest(reader) == b""
    assert response is not None
    assert response.status == 200
    assert closed
    assert len(gate.upstream.sandbox.calls("GET", "/v1/customers")) == 1


# -- limits ------------------------------------------------------------------------------


def _assert_gate_error(response: RawResponse | None, status: int, name: str, code: int) -> None:
    assert response is not None
    assert response.status == status
    body = _json(response)
    assert (body["code"], body["errorName"], body["source"]) == (code, name, "gate")
    assert isinstance(body["description"], str) and body["description"]
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Connection"].lower() == "close"


async def test_oversized_head_is_431_and_closes(start_gate: StartGate) -> None:
    """§2 RequestHeaderFieldsTooLarge: a head over max_header_bytes is 431, then closed."""
    gate = await start_gate(server={"max_header_bytes": 1024})
    padding = "".join(f"X-Pad-{i}: {'a' * 100}\r\n" for i in range(20))
    data = f"GET /v1/customers HTTP/1.1\r\nHost: gate\r\n{padding}\r\n".encode()
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, data)
        response = await _response(reader)
        rest = await _rest(reader)
    _assert_gate_error(response, 431, "RequestHeaderFieldsTooLarge", 900109)
    assert rest == b""
    assert gate.upstream.sandbox.received == []


async def test_one_endless_header_line_is_431_or_closed(start_gate: StartGate) -> None:
    """§3 max_header_bytes: a header line that never ends is refused (431) or cut."""
    gate = await start_gate(server={"max_header_bytes": 1024})
    async with _connect(_port(gate)) as (reader, writer):
        try:
            await _send(writer, b"GET /v1/customers HTTP/1.1\r\nHost: gate\r\nX-Long: ")
            for _ in range(256):  # 4 MiB in 16 KiB pieces, never a newline
                await _send(writer, b"a" * 16384)
        except ConnectionError:
            pass  # the gate closed on us: what it answered first is read below
        response = await _response(reader)
    if response is not None:
        assert response.status == 431
        assert _json(response)["errorName"] == "RequestHeaderFieldsTooLarge"
    assert gate.upstream.sandbox.received == []
    async with _connect(_port(gate)) as (reader, writer):  # and the gate still serves
        await _send(writer, _get("/v1/customers?alive", "Host: gate"))
        alive = await _response(reader)
    assert alive is not None and alive.status == 200


async def test_long_target_is_414_and_one_at_the_limit_passes(start_gate: StartGate) -> None:
    """§3 max_target_bytes: a target over the limit is 414, one at the limit passes."""
    gate = await start_gate(server={"max_target_bytes": 256})
    prefix = "/v1/customers?q="
    at_limit = prefix + "a" * (256 - len(prefix))
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get(at_limit, "Host: gate"))
        passed = await _response(reader)
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get(at_limit + "a", "Host: gate"))
        refused = await _response(reader)
        rest = await _rest(reader)
    assert passed is not None and passed.status == 200
    _assert_gate_error(refused, 414, "RequestTargetTooLong", 900108)
    assert rest == b""
    assert [len(r.query_string) for r in gate.upstream.sandbox.received] == [
        len(at_limit) - len("/v1/customers?")
    ]


# -- clocks ------------------------------------------------------------------------------


async def test_slow_head_is_408_while_another_client_is_served(start_gate: StartGate) -> None:
    """§2 RequestTimeout: a head trickling past header_timeout_s is 408; others are served."""
    gate = await start_gate(server=_FAST)
    events: list[str] = []
    head = b"GET /v1/customers?slow HTTP/1.1\r\nHost: gate\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    async with _connect(_port(gate)) as (slow_reader, slow_writer):

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in head:
                    await _send(slow_writer, bytes([byte]))
                    await asyncio.sleep(0.05)

        async def slow_answer() -> RawResponse | None:
            response = await _response(slow_reader)
            events.append("slow")
            return response

        trickling = asyncio.ensure_future(trickle())
        answering = asyncio.ensure_future(slow_answer())
        try:
            await asyncio.sleep(0.2)  # the slow head has begun
            async with _connect(_port(gate)) as (reader, writer):
                await _send(writer, _get("/v1/customers?fast", "Host: gate"))
                fast = await _response(reader)
                events.append("fast")
            slow = await answering
            rest = await _rest(slow_reader)
        finally:
            trickling.cancel()
            answering.cancel()
            await asyncio.gather(trickling, answering, return_exceptions=True)
    assert fast is not None and fast.status == 200
    _assert_gate_error(slow, 408, "RequestTimeout", 900107)
    assert rest == b""
    assert events == ["fast", "slow"]
    assert [r.query_string for r in gate.upstream.sandbox.received] == ["fast"]


async def test_stalled_gated_body_is_408_and_never_forwarded(start_gate: StartGate) -> None:
    """§2 RequestTimeout + R1: a gated body stalling past body_timeout_s is 408, blocked, unsent."""
    gate = await start_gate(server=_FAST)
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)  # even an accepted pair's half order stays
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _order_head(100) + b'{"lineItem')  # 10 of 100 bytes, then silence
        response = await _response(reader)
        rest = await _rest(reader)
    _assert_gate_error(response, 408, "RequestTimeout", 900107)
    assert response is not None and response.headers["X-Gate-Decision"] == "blocked"
    assert rest == b""
    assert _orders_at_sandbox(gate) == []
    [line] = decisions(gate.logs)
    assert (line["decision"], line["status"], line["transaction"]) == (
        "blocked",
        408,
        "new_purchase",
    )


async def test_stalled_pass_through_upload_is_408_or_cut(start_gate: StartGate) -> None:
    """§3 body_timeout_s: a streamed upload that stalls ends in 408 or a cut, never a hang."""
    gate = await start_gate(server=_FAST)
    head = b"POST /sandbox/upload HTTP/1.1\r\nHost: gate\r\nContent-Length: 100\r\n\r\n"
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, head + b"0123456789")
        response = await _response(reader)
        rest = await _rest(reader)
    if response is not None:
        _assert_gate_error(response, 408, "RequestTimeout", 900107)
    assert rest == b""
    # The upstream never took 10 bytes for a whole 100-byte upload.
    assert gate.upstream.sandbox.calls("POST", "/sandbox/upload") == []


async def test_idle_keep_alive_connection_is_closed_silently(start_gate: StartGate) -> None:
    """§3 keepalive_timeout_s: an idle keep-alive connection is closed with no bytes (no 408)."""
    gate = await start_gate(server=_FAST)
    async with _connect(_port(gate)) as (reader, writer):
        await _send(writer, _get("/v1/customers", "Host: gate"))
        answered = await _response(reader)
        rest = await _rest(reader)
    assert answered is not None and answered.status == 200
    assert rest == b""


async def test_connection_that_sends_nothing_is_closed_silently(start_gate: StartGate) -> None:
    """§3 header_timeout_s: a connection that never starts a request is closed, no answer owed."""
    gate = await start_gate(server=_FAST)
    async with _connect(_port(gate)) as (reader, _):
        rest = await _rest(reader)
    assert rest == b""


async def test_client_that_reads_nothing_of_its_answer_is_cut(start_gate: StartGate) -> None:
    """§3 body_timeout_s: a client that stops reading a long answer is cut."""
    gate = await start_gate(server=_FAST)
    size = 64 * 1024 * 1024
    async with _connect(_port(gate)) as (reader, writer):
        writer.transport.set_write_buffer_limits(0)
        await _send(writer, _get(f"/sandbox/bytes?size={size}&length=1", "Host: gate"))
        # Read nothing until the gate has given up on this connection (its only one).
        await _wait_for(lambda: len(gate.upstream.sandbox.received) == 1)
        await _wait_for(lambda: not gate.client.door.connections)
        received = 0
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(_BOUND_S):
                while chunk := await reader.read(1024 * 1024):
                    received += len(chunk)
    assert 0 < received < size  # the head and part of the body, then the cut


async def test_client_gone_mid_gated_body_forwards_nothing(gate: Gate) -> None:
    """R1: an order whose client leaves halfway through the body never reaches the upstream."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    async with _connect(_port(gate)) as (_, writer):
        await _send(writer, _order_head(len(_ORDER)) + _ORDER[: len(_ORDER) // 2])
    await _wait_for(lambda: bool(decisions(gate.logs)))
    [line] = decisions(gate.logs)
    assert (line["decision"], line["reason"]) == ("blocked", "client_gone")
    assert _orders_at_sandbox(gate) == []
    async with _connect(_port(gate)) as (reader, writer):  # the gate keeps serving
        await _send(writer, _order_head(len(_ORDER)) + _ORDER)
        whole = await _response(reader)
    assert whole is not None
    assert (whole.status, whole.headers["X-Gate-Decision"]) == (201, "allowed")
    assert _orders_at_sandbox(gate) == [_ORDER]


# -- fidelity --------------------------------------------------------------------------


@asynccontextmanager
async def _raw_upstream(answer: bytes) -> AsyncIterator[str]:
    """A loopback upstream that reads one request head per connection and writes ``answer``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def _relayed_head(start_gate: StartGate, answer: bytes) -> tuple[list[bytes], bytes]:
    """What a client of the gate reads when the upstream sends ``answer`` (a 2-byte body)."""
    async with _raw_upstream(answer) as url:
        gate = await start_gate(upstream={"url": url})
        async with _connect(_port(gate)) as (reader, writer):
            await _send(writer, _get("/v1/customers", "Host: gate"))
            head = await _raw_head(reader)
            async with asyncio.timeout(_BOUND_S):
                body = await reader.readexactly(2)
    return head, body


async def test_answer_without_server_date_or_type_gains_none(start_gate: StartGate) -> None:
    """§2 pass-through: the gate adds no Server, Date or Content-Type to a relayed answer."""
    head, body = await _relayed_head(start_gate, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    status, *lines = head
    names = {line.partition(b":")[0].strip().lower() for line in lines}
    assert status == b"HTTP/1.1 200 OK"
    assert names == {b"content-length"}
    assert body == b"ok"


async def test_answer_head_bytes_are_relayed_as_sent(start_gate: StartGate) -> None:
    """§2 pass-through: status reason, header names, repeats, order and non-UTF-8 bytes as sent."""
    sent = [b"x-lower: v", b"X-Rep: 1", b"X-Odd: caf\xe9", b"Set-Cookie: a=1", b"X-Rep: 2"]
    answer = b"HTTP/1.1 299 Whatever\r\n" + b"".join(line + b"\r\n" for line in sent)
    head, body = await _relayed_head(start_gate, answer + b"Content-Length: 2\r\n\r\nok")
    status, *lines = head
    assert status == b"HTTP/1.1 299 Whatever"
    assert [line for line in lines if not line.lower().startswith(b"content-length:")] == sent
    assert b"Content-Length: 2" in lines
    assert body == b"ok"


# -- drain -------------------------------------------------------------------------------


async def test_sigterm_drains_raw_connections(serve_gate: ServeGate, upstream: Upstream) -> None:
    """§5 SIGTERM: the in-flight answer is whole, then closed; idle and new ones get nothing."""
    served = await serve_gate()
    port = URL(served.proxy_url).port
    assert port is not None
    async with _connect(port) as (idle_reader, idle_writer), _connect(port) as (reader, writer):
        await _send(idle_writer, _get("/v1/customers?idle", "Host: gate"))
        idle_first = await _response(idle_reader)
        upstream.sandbox.knobs.delay_s = 2.0
        await _send(writer, _get("/v1/customers/slow/profiles", "Host: gate"))
        await _wait_for(lambda: len(upstream.sandbox.received) == 2)  # in flight
        served.signal(signal.SIGTERM)
        await served.wait_for_output('"draining"')
        idle_rest = await _rest(idle_reader)
        with pytest.raises(OSError):  # refused: nobody accepts any more
            late: Awaitable[Any] = asyncio.open_connection("127.0.0.1", port)
            _, late_writer = await late
            late_writer.close()
        slow = await _response(reader)
        slow_rest = await _rest(reader)
    assert idle_first is not None and idle_first.status == 200
    assert idle_rest == b""
    assert slow is not None
    assert slow.status == 200
    assert _json(slow)["path"] == "/v1/customers/slow/profiles"
    assert slow.headers["Connection"].lower() == "close"
    assert slow_rest == b""
    assert await served.wait_exit(bound_s=10) == 0  # shutdown_grace_s of serve_toml
    assert len(upstream.sandbox.received) == 2
