"""The decision log line: orjson-encoded, and escaped exactly as the stdlib escapes it.

A log line carries values a caller chose (the path, the correlation id, a
reseller id from the body): whatever they hold, the line stays one valid,
ASCII-only JSON line whose keys and values read back as they were, byte for
byte what ``json.dumps`` with compact separators writes.
"""

from __future__ import annotations

import asyncio
import enum
import io
import json
from typing import Any

import pytest

from gate.logs import HotLines, encode_line, make_logger
from gate.sandbox import make_token
from tests.conftest import Gate
from tests.support import PARTNER_A, decisions, log_lines, order, orders_path


class _Kind(enum.StrEnum):
    ALLOWED = "allowed"


HOSTILE = [
    pytest.param('say "hi"', id="quotes"),
    pytest.param("back\\slash\\", id="backslashes"),
    pytest.param("two\nlines\r\nand more", id="newlines"),
    pytest.param("".join(map(chr, range(32))), id="every-control-char"),
    pytest.param("del\x7f", id="del"),
    pytest.param("caf\u00e9 \u00ff", id="latin-1"),
    pytest.param("\u4e2d\u6587 \U0001f600", id="cjk-and-astral"),
    pytest.param("a\u2028b\u2029c\x85d", id="unicode-line-breaks"),
    pytest.param("lone \ud800 surrogate", id="lone-surrogate"),
    pytest.param('"}\n{"decision":"allowed', id="line-injection"),
    pytest.param("", id="empty"),
]


def _fields(value: Any) -> dict[str, Any]:
    return {"method": "POST", "path": value, "resellers": [value], "status": 200}


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_are_escaped_as_the_stdlib_escapes_them(value: str) -> None:
    """One ASCII line with no control character, the stdlib's bytes, read back unchanged."""
    fields = _fields(value)
    line = encode_line(fields)
    assert line == json.dumps(fields, separators=(",", ":"))
    assert line.isascii()
    assert not any(ord(char) < 0x20 or char == "\x7f" for char in line)
    assert len((line + "\n").splitlines()) == 1  # str.splitlines breaks on U+2028 and U+0085 too
    assert json.loads(line) == fields


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(True, id="bool"),
        pytest.param(0, id="zero"),
        pytest.param(-(2**63), id="int64-min"),
        pytest.param(2**70, id="int-past-64-bits"),
        pytest.param(0.0, id="float-zero"),
        pytest.param(12.345, id="latency"),
        pytest.param(1e-3, id="small-float"),
        pytest.param(_Kind.ALLOWED, id="str-enum"),
        pytest.param(["a", None, 3], id="list"),
        pytest.param(("a", "b"), id="tuple"),
    ],
)
def test_other_values_read_back_as_the_stdlib_writes_them(value: Any) -> None:
    """Numbers, null, booleans, enums and lists: the same text as the stdlib's, keys in order."""
    fields = {"first": value, "second": "x"}
    line = encode_line(fields)
    assert line == json.dumps(fields, separators=(",", ":"))
    assert list(json.loads(line)) == ["first", "second"]


def _hot_lines(level: str, fmt: str = "json") -> tuple[HotLines, io.StringIO]:
    stream = io.StringIO()
    return HotLines(level, fmt, stream, make_logger(level, fmt, stream)), stream


def test_a_line_is_the_fields_then_event_level_and_timestamp() -> None:
    """One line per call: the caller's keys in order, then event, level and an RFC 3339 stamp."""
    lines, stream = _hot_lines("info")
    lines.info("decision", {"partner": PARTNER_A, "note": 'a "b"\n'})
    lines.info("not_gated", {"partner": None})
    text = stream.getvalue()
    assert text.count("\n") == 2 and text.endswith("\n")
    first, second = (json.loads(line) for line in text.splitlines())
    assert list(first) == ["partner", "note", "event", "level", "timestamp"]
    assert first["note"] == 'a "b"\n' and first["event"] == "decision"
    assert first["level"] == "info" and first["timestamp"].endswith("Z")
    assert len(first["timestamp"]) == len("2026-12-07T09:00:00.000000Z")
    assert second == {**second, "partner": None, "event": "not_gated"}


def test_no_line_below_info() -> None:
    """At level warning the hot path writes nothing (the bench's default)."""
    lines, stream = _hot_lines("warning")
    lines.info("decision", {"partner": PARTNER_A})
    assert stream.getvalue() == ""


def test_the_console_format_keeps_structlog_rendering() -> None:
    """log.format = console is for a person: not JSON, the values still in it."""
    lines, stream = _hot_lines("info", "console")
    lines.info("decision", {"partner": PARTNER_A})
    text = stream.getvalue()
    assert "decision" in text and PARTNER_A in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_a_hostile_correlation_id_reaches_the_log_escaped(gate: Gate) -> None:
    """A gated call's MS-CorrelationId with quotes, a backslash and latin-1 bytes: one line."""
    body = json.dumps(order()).encode()
    raw = b'id "x"\\ caf\xe9 \xff'
    reader, writer = await asyncio.open_connection("127.0.0.1", gate.client.server.port)
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nMS-CorrelationId: %s\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (orders_path().encode(), make_token(PARTNER_A).encode(), raw, len(body), body)
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 403")  # the sandbox has no confirmation yet
    text = gate.logs.getvalue()
    assert text.isascii()
    assert len(log_lines(gate.logs)) == text.count("\n")  # every line whole
    (line,) = decisions(gate.logs)
    assert line["correlation_id"] == raw.decode("latin-1")
    assert line["decision"] == "blocked"
