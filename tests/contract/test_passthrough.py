"""DESIGN §2 "Pass-through is faithful": what is not gated passes untouched, streamed, unretried."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from tests.conftest import Gate, StartGate
from tests.contract.conftest import ServeGate, exchange, free_port
from tests.support import CUSTOMER, PARTNER_A, auth, order, orders_path

MiB = 1024 * 1024
_BLOCK = bytes(range(256)) * 256  # what /sandbox/bytes repeats


def _url(gate: Gate, target: str) -> URL:
    """An absolute URL to the gate whose target is sent exactly as written."""
    return URL(str(gate.client.make_url("/")).rstrip("/") + target, encoded=True)


def metric_total(text: str, name: str) -> float:
    """The sum of one metric's samples over all its label values."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _port(gate: Gate) -> int:
    port = gate.client.server.port
    assert port is not None
    return port


async def _generated(total: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    """``total`` bytes of a repeating pattern, produced a chunk at a time."""
    pattern = (_BLOCK * (chunk // len(_BLOCK) + 1))[:chunk]
    sent = 0
    while sent < total:
        piece = pattern[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


async def _sha256_of(total: int) -> str:
    digest = hashlib.sha256()
    async for piece in _generated(total):
        digest.update(piece)
    return digest.hexdigest()


def _expected_download_sha(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // len(_BLOCK)):
        digest.update(_BLOCK)
    return digest.hexdigest()


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]], Awaitable[None]]


@asynccontextmanager
async def _raw_upstream(script: Script) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback upstream that runs ``script`` per connection and logs request heads."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer, heads)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", heads
    finally:
        server.close()
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader, heads: list[bytes]) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    heads.append(head)
    return head


QUERIES = [
    pytest.param("a=1&a=2&a=1", id="repeated-keys"),
    pytest.param("q=%2B+plus&r=a+b&s=%2b", id="plus-and-encoded-plus"),
    pytest.param("empty=&=novalue&flag&&trailing=", id="empty-values"),
    pytest.param("z=1&b=2&a=3&b=1", id="order"),
    pytest.param("%7E=%7e&x=%41%42&y=A", id="encoded-unreserved-kept"),
    pytest.param("$filter=name%20eq%20'x'&$top=10", id="odata"),
    pytest.param("x=%zz&y=%&z=%2", id="malformed-escapes"),
    pytest.param("a=1;b=2", id="semicolon"),
    pytest.param("next=/v1/customers/c/orders?x=1", id="path-and-question-mark"),
    pytest.param("k=%E2%9C%93&k2=%e2%9c%93", id="utf8"),
]


@pytest.mark.parametrize("query", QUERIES)
async def test_query_string_reaches_upstream_byte_for_byte(gate: Gate, query: str) -> None:
    """§2 pass-through: the query string is forwarded byte for byte."""
    response = await gate.client.session.get(_url(gate, f"/v1/customers?{query}"))
    assert response.status == 200
    (received,) = gate.upstream.sandbox.received
    assert received.query_string == query


async def test_query_string_on_gated_path_is_forwarded_unchanged(start_gate: StartGate) -> None:
    """§2 pass-through: a gated call that is allowed keeps its query string byte for byte."""
    gate = await start_gate()
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    query = "b=%2B&a=1&a=2&c="
    response = await gate.client.session.post(
        _url(gate, f"{orders_path()}?{query}"), json=order(), headers=auth()
    )
    assert response.status == 201
    (placed,) = gate.upstream.sandbox.calls("POST", "/orders")
    assert placed.query_string == query


async def test_repeated_headers_pass_both_ways(gate: Gate) -> None:
    """§2 pass-through: repeated request headers and repeated Set-Cookie come through, in order."""
    headers = CIMultiDict([("X-Multi", "one"), ("X-Multi", "two"), ("X-Multi", "three")])
    headers.add("Accept", "application/json")
    headers.add("Accept", "text/plain")
    response = await gate.client.get("/v1/customers", headers=headers)
    assert response.status == 200
    assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    (received,) = gate.upstream.sandbox.received
    assert received.headers.getall("X-Multi") == ["one", "two", "three"]
    assert received.headers.getall("Accept") == ["application/json", "text/plain"]


async def test_correlation_and_request_ids_are_kept(gate: Gate) -> None:
    """§2 pass-through: MS-CorrelationId and MS-RequestId reach the upstream and come back."""
    ids = {"MS-CorrelationId": "corr-7f3a", "MS-RequestId": "req-19c2"}
    response = await gate.client.get("/v1/customers", headers=ids)
    assert response.status == 200
    assert response.headers["MS-RequestId"] == "req-19c2"
    (received,) = gate.upstream.sandbox.received
    assert received.headers["MS-CorrelationId"] == "corr-7f3a"
    assert received.headers["MS-RequestId"] == "req-19c2"


_HOP_BY_HOP_REQUEST = (
    b"GET /v1/customers HTTP/1.1\r\n"
    b"Host: gate.example\r\n"
    b"Connection: keep-alive, X-Secret\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"TE: trailers\r\n"
    b"Trailer: X-Checksum\r\n"
    b"Upgrade: h2c\r\n"
    b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"X-Secret: 1\r\n"
    b"X-Kept: yes\r\n"
    b"\r\n"
)


async def test_hop_by_hop_request_headers_are_dropped(gate: Gate) -> None:
    """§2 pass-through: hop-by-hop headers, and any named in Connection, never reach upstream."""
    (response,) = await exchange(_port(gate), _HOP_BY_HOP_REQUEST)
    assert response.status == 200
    (received,) = gate.upstream.sandbox.received
    for name in (
        "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization",
        "Proxy-Connection", "X-Secret",
    ):  # fmt: skip
        assert name not in received.headers, name
    assert "x-secret" not in received.headers.get("Connection", "").lower()
    assert received.headers["X-Kept"] == "yes"


async def test_hop_by_hop_response_headers_are_dropped(start_gate: StartGate) -> None:
    """§2 pass-through: the upstream's hop-by-hop headers, and those it names, never reach us."""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, heads: list[bytes]
    ) -> None:
        await _read_head(reader, heads)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Up-Secret\r\n"
            b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nX-Up-Secret: 1\r\n"
            b"Upgrade: h2c\r\nX-Up-Kept: yes\r\n\r\nok"
        )
        await writer.drain()

    async with _raw_upstream(answer) as (url, _):
        gate = await start_gate(upstream={"url": url})
        response = await gate.client.get("/v1/customers")
        assert response.status == 200
        assert await response.read() == b"ok"
    for name in ("Keep-Alive", "Proxy-Authenticate", "X-Up-Secret", "Upgrade"):
        assert name not in response.headers, name
    assert response.headers["X-Up-Kept"] == "yes"


async def test_forwarded_headers_are_added(gate: Gate) -> None:
    """§2 pass-through: X-Forwarded-For is appended to, X-Forwarded-Proto/-Host are set."""
    spoofed = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
    }
    response = await gate.client.get("/v1/customers", headers=spoofed)
    assert response.status == 200
    (received,) = gate.upstream.sandbox.received
    assert received.headers.getall("X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]
    assert received.headers.getall("X-Forwarded-Proto") == ["http"]
    assert received.headers.getall("X-Forwarded-Host") == [f"127.0.0.1:{_port(gate)}"]


async def test_forwarded_for_is_set_when_absent(gate: Gate) -> None:
    """§2 pass-through: a call with no X-Forwarded-For gets one naming the client."""
    await gate.client.get("/v1/customers")
    (received,) = gate.upstream.sandbox.received
    assert received.headers.getall("X-Forwarded-For") == ["127.0.0.1"]


async def test_url_override_headers_are_dropped(gate: Gate) -> None:
    """§2 pass-through: X-Original-URL and X-Rewrite-URL never reach the upstream."""
    headers = {"X-Original-URL": "/admin", "X-Rewrite-URL": "/admin", "X-Kept": "yes"}
    response = await gate.client.get("/v1/customers", headers=headers)
    assert response.status == 200
    (received,) = gate.upstream.sandbox.received
    assert "X-Original-URL" not in received.headers
    assert "X-Rewrite-URL" not in received.headers
    assert received.headers["X-Kept"] == "yes"


@pytest.mark.parametrize("status", [201, 404, 500])
async def test_status_and_body_are_relayed(gate: Gate, status: int) -> None:
    """§2 pass-through: the upstream's status and body come back as they were."""
    response = await gate.client.get(f"/sandbox/status/{status}")
    assert response.status == status
    assert await response.json() == {"status": status}
    assert "X-Gate-Decision" not in response.headers


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_status_is_relayed_without_a_body(gate: Gate, status: int) -> None:
    """§2 pass-through: 204 and 304 come back as they were, with no body."""
    (response,) = await exchange(
        _port(gate), b"GET /sandbox/status/%d HTTP/1.1\r\nHost: gate\r\n\r\n" % status
    )
    assert (response.status, response.body) == (status, b"")
    assert "Transfer-Encoding" not in response.headers


async def test_head_is_relayed_without_a_body(gate: Gate) -> None:
    """§2 pass-through: HEAD reaches the upstream as HEAD and its headers come back, no body."""
    response = await gate.client.head("/v1/customers")
    assert response.status == 200
    assert await response.read() == b""
    assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert int(response.headers["Content-Length"]) > 0
    (received,) = gate.upstream.sandbox.received
    assert received.method == "HEAD"


@pytest.mark.parametrize(
    ("method", "with_length"),
    [pytest.param("POST", False, id="post-chunked"), pytest.param("PUT", True, id="put-length")],
)
async def test_large_upload_is_streamed_whole(gate: Gate, method: str, with_length: bool) -> None:
    """§2 pass-through: a 64 MiB request body arrives upstream with its exact size and hash."""
    size = 64 * MiB
    headers = {"Content-Length": str(size)} if with_length else {}
    response = await gate.client.request(
        method, "/sandbox/upload", data=_generated(size), headers=headers
    )
    assert response.status == 200
    expected = {"size": size, "sha256": await _sha256_of(size)}
    assert await response.json() == expected
    (received,) = gate.upstream.sandbox.received
    assert (received.method, received.size, received.sha256) == (method, size, expected["sha256"])


async def test_compressed_request_body_is_forwarded_as_sent(gate: Gate) -> None:
    """§2 pass-through: a gzip request body reaches the upstream still compressed, whole."""
    plain = b"".join(b"line %d of a compressed upload\n" % n for n in range(20_000))
    packed = gzip.compress(plain)
    response = await gate.client.post(
        "/sandbox/upload",
        data=packed,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
    )
    assert response.status == 200
    (received,) = gate.upstream.sandbox.received
    assert received.headers["Content-Encoding"] == "gzip"
    assert received.headers["Content-Length"] == str(len(packed))
    # the sandbox inflates what it receives: only the intact gzip stream inflates to this
    assert (received.size, received.sha256) == (len(plain), hashlib.sha256(plain).hexdigest())


async def test_compressed_response_body_is_relayed_as_sent(start_gate: StartGate) -> None:
    """§2 pass-through: a gzip response body comes back byte for byte, not inflated."""
    packed = gzip.compress(b"x" * 200_000)

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, heads: list[bytes]
    ) -> None:
        await _read_head(reader, heads)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
            + packed
        )
        await writer.drain()

    async with _raw_upstream(answer) as (url, _):
        gate = await start_gate(upstream={"url": url})
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(gate.client.make_url("/v1/customers/c/invoices")) as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            assert await response.read() == packed


@pytest.mark.parametrize("length", [pytest.param("", id="chunked"), pytest.param("1", id="length")])
async def test_large_download_is_streamed_whole(gate: Gate, length: str) -> None:
    """§2 pass-through: a 64 MiB response body arrives whole, framed as the upstream framed it."""
    size = 64 * MiB
    query = f"size={size}" + ("&length=1" if length else "")
    async with gate.client.get(f"/sandbox/bytes?{query}") as response:
        assert response.status == 200
        digest, got = hashlib.sha256(), 0
        async for chunk in response.content.iter_chunked(MiB):
            digest.update(chunk)
            got += len(chunk)
    assert got == size
    assert digest.hexdigest() == _expected_download_sha(size)
    if length:
        assert response.headers["Content-Length"] == str(size)
    else:
        assert response.headers["Transfer-Encoding"] == "chunked"


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0])
    return fields


async def _stream_both_ways(session: aiohttp.ClientSession, base: str, size: int) -> None:
    async with session.post(f"{base}/sandbox/upload", data=_generated(size)) as response:
        assert response.status == 200
        assert (await response.json())["size"] == size
    async with session.get(f"{base}/sandbox/bytes?size={size}&length=1") as response:
        assert response.status == 200
        got = 0
        async for chunk in response.content.iter_chunked(MiB):
            got += len(chunk)
        assert got == size


async def test_streaming_costs_bounded_memory(serve_gate: ServeGate) -> None:
    """§2 pass-through: 256 MiB each way through `gate serve` grows its memory by under 64 MiB."""
    served = await serve_gate()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await _stream_both_ways(session, served.proxy_url, 4 * MiB)  # warm every code path
        before = _memory_kib(served.pid)
        await _stream_both_ways(session, served.proxy_url, 256 * MiB)
        after = _memory_kib(served.pid)
    print(f"gate serve memory KiB: before {before}, after {after}")
    assert after["VmHWM"] - before["VmHWM"] < 64 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 64 * 1024, (before, after)


async def test_post_is_never_retried_when_upstream_drops(start_gate: StartGate) -> None:
    """§2 pass-through: a POST the upstream drops is answered 502, and sent upstream once."""

    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, heads: list[bytes]
    ) -> None:
        head = await _read_head(reader, heads)
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await _read_head(reader, heads)  # the next call on this kept-alive connection: dropped

    async with _raw_upstream(one_answer_per_connection) as (url, heads):
        gate = await start_gate(upstream={"url": url})
        warm = await gate.client.get("/v1/customers")
        assert warm.status == 200 and await warm.read() == b"ok"
        response = await gate.client.post("/v1/customers", data=b'{"companyProfile": {}}')
        assert response.status == 502
        assert (await response.json())["errorName"] == "UpstreamUnavailable"
        posts = [head for head in heads if head.startswith(b"POST ")]
        assert len(posts) == 1, heads


async def test_unreachable_upstream_is_502(start_gate: StartGate) -> None:
    """§2 errors: an upstream that refuses connections is answered 502 UpstreamUnavailable."""
    gate = await start_gate(upstream={"url": f"http://127.0.0.1:{free_port()}"})
    response = await gate.client.get("/v1/customers")
    assert response.status == 502
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body["errorName"] == "UpstreamUnavailable" and body["source"] == "gate"


async def test_slow_upstream_is_504(start_gate: StartGate) -> None:
    """§2 errors: an upstream silent for longer than read_timeout_s is answered 504."""
    gate = await start_gate(upstream={"read_timeout_s": 0.2})
    gate.upstream.sandbox.knobs.delay_s = 1.0
    response = await gate.client.get("/v1/customers")
    assert response.status == 504
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body["errorName"] == "UpstreamTimeout" and body["source"] == "gate"


async def test_upstream_dying_mid_body_is_never_a_complete_answer(gate: Gate) -> None:
    """§2 pass-through: a body the upstream cuts short is a failure, never a short 200."""
    try:
        response = await gate.client.get("/sandbox/abort")
        body = await response.read()
    except aiohttp.ClientPayloadError:
        return
    assert response.status == 502, (response.status, len(body))
    assert json.loads(body)["errorName"] == "UpstreamUnavailable"


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Content-Length: %d\r\n\r\n" % (8 * MiB), id="length"),
        pytest.param(b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % MiB, id="chunked"),
    ],
)
async def test_upstream_dying_mid_stream_truncates_the_answer(
    start_gate: StartGate, framing: bytes
) -> None:
    """§2 pass-through: a streamed body the upstream cuts short fails at the client too."""

    async def die_after_one_mib(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, heads: list[bytes]
    ) -> None:
        await _read_head(reader, heads)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + framing)
        writer.write(b"x" * MiB)
        await writer.drain()

    async with _raw_upstream(die_after_one_mib) as (url, _):
        gate = await start_gate(upstream={"url": url})
        async with gate.client.get("/v1/customers/c/invoices/x/documents") as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
    errors = metric_total(await gate.metrics(), "gate_upstream_errors_total")
    assert errors == 1  # one failure, counted once
