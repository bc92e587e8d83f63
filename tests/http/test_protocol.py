"""gate.http.protocol driven byte by byte through a fake client socket (uvicorn's way).

The front door's real ``ProxyProtocol`` and ``FrontDoor`` run under a small
handler (``tests.http.fake_transport.App``: it answers each request with what
it read); only the client's socket is fake. Contract tests over real sockets
stay in tests/contract; these pin the connection's parsing rules: keep-alive,
pipelining in order, chunked bodies, the head limits, a client that
half-closes, and one answer per request. Its clocks and flow control are
tests/http/test_flow.py's.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate.core.action import Answer
from gate.http.cycle import Cycle
from tests.http.fake_transport import (
    App,
    FakeTransport,
    Written,
    answers,
    chunked,
    connect,
    error_name,
    feed,
    get,
    make_door,
    post,
    settle,
)

# -- keep-alive ------------------------------------------------------------------


async def test_keep_alive_answers_each_request_on_one_connection() -> None:
    """Requests one after the other share the connection; nothing closes it."""
    app = App()
    protocol, transport = connect(make_door(app))
    feed(protocol, get("/v1/a"))
    await settle()
    feed(protocol, get("/v1/b"))
    await settle()
    first, second = answers(transport.written)
    assert (first.status, first.body) == (200, b"GET /v1/a|")
    assert (second.status, second.body) == (200, b"GET /v1/b|")
    assert first.header(b"connection") is None
    assert not transport.closed


async def test_connection_close_ends_after_its_answer() -> None:
    """A request that says Connection: close gets its answer, then the socket closes."""
    protocol, transport = connect(make_door(App()))
    feed(protocol, get("/v1/a", "Connection: close"))
    await settle()
    [answer] = answers(transport.written)
    assert answer.body == b"GET /v1/a|"
    assert answer.header(b"connection") == b"close"
    assert transport.closed and not transport.aborted


async def test_bytes_after_connection_close_are_refused_not_handled() -> None:
    """A request sent after Connection: close is never handled: one 400 after the answer."""
    app = App()
    protocol, transport = connect(make_door(app))
    feed(protocol, get("/v1/a", "Connection: close") + get("/v1/never"))
    await settle()
    found = answers(transport.written)
    assert [a.status for a in found] == [200, 400]
    assert error_name(found[1]) == "MalformedRequest"
    assert [cycle.target for cycle in app.cycles] == ["/v1/a"]
    assert transport.closed


async def test_http10_closes_unless_it_asks_for_keep_alive() -> None:
    """HTTP/1.0 closes after its answer by default, and stays with Connection: keep-alive."""
    protocol, transport = connect(make_door(App()))
    feed(protocol, b"GET /v1/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await settle()
    [answer] = answers(transport.written)
    assert answer.header(b"connection") == b"keep-alive"
    assert not transport.closed
    feed(protocol, b"GET /v1/b HTTP/1.0\r\n\r\n")
    await settle()
    assert [a.body for a in answers(transport.written)] == [b"GET /v1/a|", b"GET /v1/b|"]
    assert transport.closed


# -- byte by byte, chunked, pipelining ------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 7, 64])
async def test_a_request_fed_in_pieces_is_one_request(step: int) -> None:
    """However the bytes are split, a request with a body is read as one request."""
    protocol, transport = connect(make_door(App()))
    feed(protocol, post("/v1/customers", b'{"a": 1}', "X-Note: x"), step=step)
    await settle()
    [answer] = answers(transport.written)
    assert answer.body == b'POST /v1/customers|{"a": 1}'


@pytest.mark.parametrize("step", [1, 3, 0])
async def test_chunked_body_arrives_whole(step: int) -> None:
    """A chunked body (chunk extensions and trailers too) reaches the handler as its bytes."""
    protocol, transport = connect(make_door(App()))
    data = (
        b"POST /v1/x HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;note=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    feed(protocol, data + get("/v1/after"), step=step)
    await settle()
    assert [a.body for a in answers(transport.written)] == [
        b"POST /v1/x|hello world",
        b"GET /v1/after|",
    ]


async def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    """Pipelined requests run one at a time, reading paused, answered in the order sent."""
    hold = asyncio.Event()
    app = App(hold=hold)
    protocol, transport = connect(make_door(app))
    feed(protocol, get("/v1/1") + post("/v1/2", b"two") + chunked("/v1/3", b"three"))
    await settle()
    assert len(app.cycles) == 1  # the others wait their turn
    assert not transport.reading and transport.pauses == 1
    assert transport.written == b""
    hold.set()
    await settle()
    assert [a.body for a in answers(transport.written)] == [
        b"GET /v1/1|",
        b"POST /v1/2|two",
        b"POST /v1/3|three",
    ]
    assert transport.reading  # the queue is empty: reading again
    assert not transport.closed


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 97])
async def test_a_head_over_max_header_bytes_is_431(step: int) -> None:
    """server.max_header_bytes: a larger head is answered 431 and the connection closed."""
    app = App()
    protocol, transport = connect(make_door(app, max_header_bytes=1024))
    feed(protocol, get("/v1/a", "X-Big: " + "b" * 2000), step=step)
    await settle()
    [answer] = answers(transport.written)
    assert answer.status == 431
    assert error_name(answer) == "RequestHeaderFieldsTooLarge"
    assert transport.closed
    assert app.cycles == []


async def test_a_header_line_that_never_ends_is_bounded() -> None:
    """A header line with no end (llhttp holds it whole) is cut at the limit plus slack: 431."""
    protocol, transport = connect(make_door(App(), max_header_bytes=1024))
    feed(protocol, b"GET / HTTP/1.1\r\nHost: gate\r\nX-Endless: ")
    for _ in range(40):  # 40 x 8 KiB: past 1 KiB + 256 KiB of slack
        if transport.closed:
            break
        feed(protocol, b"e" * 8192)
    [answer] = answers(transport.written)
    assert answer.status == 431
    assert transport.closed


async def test_a_target_over_max_target_bytes_is_414() -> None:
    """server.max_target_bytes: a longer request target is answered 414, never handled."""
    app = App()
    protocol, transport = connect(make_door(app, max_target_bytes=256))
    feed(protocol, get("/v1/" + "a" * 300), step=50)
    await settle()
    [answer] = answers(transport.written)
    assert answer.status == 414
    assert error_name(answer) == "RequestTargetTooLong"
    assert transport.closed
    assert app.cycles == []


async def test_nothing_more_is_handled_once_an_answer_closed_the_connection() -> None:
    """Closed is a state: pipelined requests behind an answer that closed are never handled."""
    seen: list[str] = []

    def answer_at_once(cycle: Cycle) -> None:
        seen.append(cycle.target)
        cycle.answer(Answer(403, b"no", ()))  # the body is unread: the connection closes

    protocol, transport = connect(make_door(answer_at_once))
    feed(protocol, post("/v1/x", b"0123456789") + get("/v1/after") + get("/v1/later"))
    await settle()
    assert seen == ["/v1/x"]
    [answer] = answers(transport.written)
    assert answer.status == 403
    assert transport.closed
    assert protocol.state == "closed"


# -- half-close ---------------------------------------------------------------------------


async def test_half_close_mid_body_ends_the_call_quietly() -> None:
    """A client half-closes mid-body: the body's reader hears ClientGone, nothing is written."""
    app = App()
    door = make_door(app)
    protocol, transport = connect(door)
    feed(protocol, post("/v1/x", b"0123456789")[:-5])
    await settle()
    assert not protocol.eof_received()  # falsy: asyncio closes the transport itself
    transport.close()
    await settle()
    assert app.gone == 1
    assert transport.written == b""
    assert protocol not in door.connections
    assert not door.tasks  # the cycle's task ended


async def test_half_close_while_answers_wait_writes_nothing_after_close() -> None:
    """Pipelined requests still waiting when the client half-closes are dropped, not written."""
    hold = asyncio.Event()
    app = App(hold=hold)
    door = make_door(app)
    protocol, transport = connect(door)
    feed(protocol, get("/v1/1") + get("/v1/2"))
    await settle()
    assert not protocol.eof_received()
    transport.close()
    await settle()
    hold.set()
    await settle()
    assert transport.written == b""  # FakeTransport also fails any write after close
    assert len(app.cycles) == 1
    assert not door.tasks


# -- one answer per request ----------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(
            b"POST /v1/x HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            id="chunk-size-not-hex",
        ),
        pytest.param(
            b"POST /v1/x HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhelloXX\r\n",
            id="chunk-longer-than-its-size",
        ),
        pytest.param(b"GET /v1/x HTTP/1.1\r\nHost: gate\r\nBad Name: x\r\n\r\n", id="bad-head"),
        pytest.param(b"GET /v1/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", id="two-hosts"),
    ],
)
@pytest.mark.parametrize("step", [0, 1])
async def test_a_broken_request_after_good_ones_gets_exactly_one_400(
    broken: bytes, step: int
) -> None:
    """Each request gets one answer: the good ones theirs, the broken one one 400; then close."""
    protocol, transport = connect(make_door(App()))
    feed(protocol, get("/v1/1") + post("/v1/2", b"two") + broken + get("/v1/never"), step=step)
    await settle()
    await settle()
    found = answers(transport.written)
    assert [a.status for a in found] == [200, 200, 400], [a.status for a in found]
    assert [a.body for a in found[:2]] == [b"GET /v1/1|", b"POST /v1/2|two"]
    assert transport.closed


_GOOD = st.sampled_from(
    [
        get("/v1/g"),
        get("/v1/h", "X-Note: n"),
        post("/v1/p", b'{"q": 1}'),
        chunked("/v1/c", b"ab", b"cde"),
        post("/v1/e", b"", "Expect: 100-continue"),
    ]
)
_BROKEN = st.sampled_from(
    [
        b"",  # none
        b"POST /v1/x HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: gate\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /v1/x HTTP/1.1\r\nHost: gate\r\nX: a\x00b\r\n\r\n",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    good=st.lists(_GOOD, min_size=1, max_size=5),
    broken=_BROKEN,
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
)
def test_every_request_gets_exactly_one_answer(
    good: list[bytes], broken: bytes, cuts: list[int]
) -> None:
    """Property: however the stream is cut, N requests get N answers in order (+1 400 if broken)."""
    data = b"".join(good) + broken
    points = sorted({cut % len(data) for cut in cuts} - {0})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]

    async def run() -> tuple[list[Written], FakeTransport]:
        protocol, transport = connect(make_door(App()))
        for piece in pieces:
            protocol.data_received(piece)
            await settle()
        await settle()
        return answers(transport.written), transport

    loop = asyncio.new_event_loop()
    try:
        found, transport = loop.run_until_complete(run())
    finally:
        loop.close()
    expected = [200] * len(good) + ([400] if broken else [])
    assert [a.status for a in found] == expected
    assert [a.body.split(b"|")[0] for a in found[: len(good)]] == [
        request.split(b" HTTP/1.1")[0] for request in good
    ]
    assert transport.closed == bool(broken)
