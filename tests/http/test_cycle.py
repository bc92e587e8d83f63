"""gate.http.cycle: one request's answer framed and written, its body taken, its end.

Each ``Cycle`` is the real one the connection (``ProxyProtocol`` over the
fake client socket) makes for a request; the handlers here answer it the ways
the pipeline does, and the tests read what a client would.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from gate.core.action import Answer
from gate.errors import GateError
from gate.http.cycle import ClientGone, Cycle
from gate.tasks import Later
from tests.http.fake_transport import answers, chunked, connect, feed, get, make_door, post, settle


async def streamed(cycle: Cycle) -> None:
    """Answer in two pieces of unknown total length, as a relayed upstream answer streams."""
    is_chunked = cycle.respond(200, b"OK", b"X-A: 1\r\n", length=None)
    await cycle.write(b"first,", is_chunked)
    await cycle.write(b"second", is_chunked)
    cycle.end(is_chunked)
    cycle.done()


async def test_a_streamed_answer_is_chunked_for_http11() -> None:
    """No length known: HTTP/1.1 gets Transfer-Encoding: chunked, and the connection stays."""
    protocol, transport = connect(make_door(streamed))
    feed(protocol, get("/v1/a"))
    await settle()
    [answer] = answers(transport.written)
    assert (answer.status, answer.body) == (200, b"first,second")
    assert answer.header(b"transfer-encoding") == b"chunked"
    assert answer.header(b"x-a") == b"1"
    assert not transport.closed


async def test_a_streamed_answer_to_http10_ends_by_closing() -> None:
    """HTTP/1.0 knows no chunked: the answer runs until the connection closes."""
    protocol, transport = connect(make_door(streamed))
    feed(protocol, b"GET /v1/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await settle()
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Transfer-Encoding" not in head
    assert body == b"first,second"
    assert transport.closed


def answer_with(answer: Answer) -> Callable[[Cycle], Later]:
    def handler(cycle: Cycle) -> Later:
        cycle.answer(answer)
        return None

    return handler


async def test_an_answer_to_head_has_its_length_and_no_body() -> None:
    """HEAD: the head of the answer GET would get, Content-Length included, without the body."""
    door = make_door(answer_with(Answer(200, b"twelve bytes", ())))
    protocol, transport = connect(door)
    feed(protocol, b"HEAD /v1/a HTTP/1.1\r\nHost: gate\r\n\r\n" + get("/v1/b"))
    await settle()
    first, _, rest = transport.written.partition(b"\r\n\r\n")
    assert b"Content-Length: 12" in first
    assert rest.startswith(b"HTTP/1.1 200")  # the next answer follows at once: no body between
    assert [a.body for a in answers(rest)] == [b"twelve bytes"]


async def test_an_answer_before_the_body_is_read_closes_the_connection() -> None:
    """Unread request bytes cannot be skipped safely: the answer says close, then it closes."""
    protocol, transport = connect(make_door(answer_with(Answer(403, b"no", ()))))
    feed(protocol, post("/v1/x", b"0123456789")[:-4])
    await settle()
    [answer] = answers(transport.written)
    assert (answer.status, answer.header(b"connection")) == (403, b"close")
    assert transport.closed


def failing(after_head: bool) -> Callable[[Cycle], Later]:
    def handler(cycle: Cycle) -> Later:
        if after_head:
            cycle.respond(200, b"OK", b"", length=100)
        cycle.fail(RuntimeError("a bug"))
        return None

    return handler


async def test_a_bug_before_anything_was_sent_is_one_500() -> None:
    """A handler's bug is a 500 (never silence), then the connection closes."""
    protocol, transport = connect(make_door(failing(after_head=False)))
    feed(protocol, get("/v1/a") + get("/v1/never"))
    await settle()
    [answer] = answers(transport.written)
    assert answer.status == 500
    assert json.loads(answer.body)["errorName"] == "GateError"
    assert transport.closed and not transport.aborted


async def test_a_bug_after_the_head_was_sent_cuts_the_connection() -> None:
    """Once the status line is out, a failure can only cut: never a short answer looking whole."""
    protocol, transport = connect(make_door(failing(after_head=True)))
    feed(protocol, get("/v1/a"))
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 200")
    assert transport.aborted


def body_echo(limit: int, tasks: list[bool]) -> Callable[[Cycle], Later]:
    """Answer the whole body back (or its error) through ``body_then``; note if a task ran."""

    def handler(cycle: Cycle) -> Later:
        def step(raw: bytes | GateError | ClientGone) -> Later:
            if isinstance(raw, bytes):
                cycle.answer(Answer(200, b"body:" + raw, ()))
            else:
                cycle.answer(Answer(413, type(raw).__name__.encode(), ()))
            return None

        work = cycle.body_then(limit, step)
        tasks.append(work is not None)
        return work

    return handler


@pytest.mark.parametrize(
    ("request_bytes", "as_task", "body"),
    [
        pytest.param(get("/v1/a"), False, b"body:", id="no-body-at-once"),
        pytest.param(post("/v1/a", b"small"), False, b"body:small", id="small-by-callback"),
        pytest.param(chunked("/v1/a", b"ab", b"cd"), True, b"body:abcd", id="chunked-by-task"),
        pytest.param(post("/v1/a", b"x" * 2000), True, b"BodyTooLarge", id="over-the-limit"),
        pytest.param(chunked("/v1/a", b"x" * 2000), True, b"BodyTooLarge", id="chunked-over"),
    ],
)
async def test_body_then_carries_on_with_the_whole_body(
    request_bytes: bytes, as_task: bool, body: bytes
) -> None:
    """The whole body (or why not) reaches the step; a task only when it must be read chunked."""
    tasks: list[bool] = []
    protocol, transport = connect(make_door(body_echo(1024, tasks)))
    feed(protocol, request_bytes)
    await settle()
    [answer] = answers(transport.written)
    assert answer.body == body
    assert tasks == [as_task]


async def test_a_cycle_knows_its_client() -> None:
    """X-Forwarded-For and -Proto come from the connection; gone once it is closed."""
    seen: list[Cycle] = []

    def handler(cycle: Cycle) -> Later:
        seen.append(cycle)
        return None

    protocol, _ = connect(make_door(handler))
    feed(protocol, get("/v1/a"))
    [cycle] = seen
    assert (cycle.peer, cycle.proto, cycle.gone) == (b"127.0.0.1", b"http", False)
    assert (cycle.method, cycle.target, cycle.length) == ("GET", "/v1/a", None)
    cycle.done()
    cycle.done()  # a second end is nothing
    protocol.close()
    assert cycle.gone and cycle.ended
