"""gate.http.head's RequestHead: which request headers the gate reads, forwards or drops."""

from __future__ import annotations

import pytest

from gate.http.head import RequestHead


def head(*pairs: tuple[bytes, bytes]) -> RequestHead:
    built = RequestHead()
    for name, value in pairs:
        built.add(name, value)
    return built


def test_headers_are_forwarded_as_sent_in_order_with_repeats() -> None:
    """§2 pass-through: names keep their case, order and repeats; values are untouched."""
    built = head((b"X-A", b"1"), (b"Authorization", b"Bearer t"), (b"x-a", b"2"))
    assert b"".join(built.lines) == b"X-A: 1\r\nAuthorization: Bearer t\r\nx-a: 2\r\n"
    assert built.raw == [(b"X-A", b"1"), (b"Authorization", b"Bearer t"), (b"x-a", b"2")]


@pytest.mark.parametrize(
    "name",
    [b"Connection", b"Keep-Alive", b"TE", b"Upgrade", b"Proxy-Authorization", b"Host",
     b"Content-Length", b"Transfer-Encoding", b"X-Forwarded-For", b"X-Forwarded-Host",
     b"X-Original-URL", b"X-Rewrite-URL"],
)  # fmt: skip
def test_hop_by_hop_framing_and_routing_headers_are_never_forwarded(name: bytes) -> None:
    """§2: hop-by-hop headers, framing the gate redoes and URL overrides stay at the gate."""
    assert head((name, b"v"), (b"X-Kept", b"1")).lines == [b"X-Kept", b": ", b"1", b"\r\n"]


@pytest.mark.parametrize("name", [b"X_Original_URL", b"x_rewrite_url", b"X_HTTP_Method"])
def test_underscore_spellings_of_dropped_headers_are_dropped(name: bytes) -> None:
    """IIS reads X_Original_URL as X-Original-URL: a look-alike is never forwarded either."""
    assert head((name, b"/admin")).lines == []


def test_the_headers_the_gate_reads_are_found_by_lowercase_name() -> None:
    """The core reads a few headers by name, every value in order."""
    built = head((b"MS-CorrelationId", b"abc"), (b"Host", b"gate"), (b"X-HTTP-Method", b"PUT"))
    assert built.getall("ms-correlationid") == ["abc"]
    assert built.getall("host") == ["gate"]
    assert built.getall("x-http-method") == ["PUT"]
    assert built.getall("authorization") == ()  # a read header that was not sent


def test_a_configured_header_name_is_found_too() -> None:
    """identity.partner_header may name any header: it is looked up in the raw pairs."""
    built = head((b"X-Partner-Tenant", b"t1"), (b"x-partner-tenant", b"t2"))
    assert list(built.getall("x-partner-tenant")) == ["t1", "t2"]


def test_headers_named_by_connection_are_dropped_when_asked() -> None:
    """RFC 9110 §7.6.1: what a Connection header names is hop-by-hop for this request."""
    built = head((b"Connection", b"X-Secret"), (b"X-Secret", b"1"), (b"X-Kept", b"2"))
    assert built.forwardable({b"x-secret"}) == b"X-Kept: 2\r\n"


def test_a_head_that_forwards_nothing_builds_no_lines_but_reads_the_same() -> None:
    """The decision service's door: headers are read as ever; no upstream lines are built."""
    head = RequestHead(forwards=False)
    head.add(b"Host", b"gate")
    head.add(b"Authorization", b"Bearer x")
    head.add(b"X-Custom", b"1")
    assert head.lines == []
    assert head.getall("authorization") == ["Bearer x"]
    assert head.forwardable(set()) == b"Authorization: Bearer x\r\nX-Custom: 1\r\n"


def test_headers_are_read_the_same_after_a_flood_of_new_names() -> None:
    """Kinds are remembered per spelling, for a bounded number of spellings: past the bound,
    a header is still sorted (read, forwarded, dropped) exactly as before it."""
    flood = RequestHead()
    for number in range(3000):
        flood.add(b"X-Name-%d" % number, b"v")
    head = RequestHead()
    head.add(b"AuThOrIzAtIoN", b"Bearer y")
    head.add(b"X_Original_URL", b"/evil")  # an underscore look-alike of a dropped header
    head.add(b"X-Name-2999", b"kept")
    assert head.getall("authorization") == ["Bearer y"]
    assert b"".join(head.lines) == b"AuThOrIzAtIoN: Bearer y\r\nX-Name-2999: kept\r\n"
    assert len(flood.lines) == 3000 * 4


def test_a_long_header_name_is_sorted_like_a_short_one() -> None:
    """Names over 64 bytes are not remembered (memory), but read and forwarded as ever."""
    long_name = b"X-" + b"a" * 5000
    for _ in range(3):
        head = RequestHead()
        head.add(long_name, b"v")
        head.add(b"Authorization", b"Bearer z")
        assert head.lines[:4] == [long_name, b": ", b"v", b"\r\n"]
        assert head.getall("authorization") == ["Bearer z"]
