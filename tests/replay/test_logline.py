"""gate.replay.logline: decision lines are read back; every other line is a counted skip."""

from __future__ import annotations

import json

import pytest

from gate.replay.logline import LoggedCall, Skip, read_line
from tests.replay.logs import entry, line
from tests.support import PARTNER_A


def test_a_decision_line_is_read() -> None:
    """§4 replay input: the fields a replay needs come back typed, the time as epoch seconds."""
    call = read_line(line())
    assert isinstance(call, LoggedCall)
    assert (call.method, call.rule, call.decision, call.reason) == (
        "POST", "create-order", "blocked", "not_accepted"
    )  # fmt: skip
    assert call.acceptance == "not_accepted"
    assert call.at == pytest.approx(1717243200.000001)


def test_a_not_gated_line_has_no_decision() -> None:
    """§4: a call its body made ungated is replayed too, with no logged decision."""
    call = read_line(line(event="not_gated", decision=None, body="cancel_only", acceptance=None))
    assert isinstance(call, LoggedCall)
    assert (call.decision, call.facts, call.acceptance) == (None, "cancel_only", None)


def test_missing_optional_fields_are_none() -> None:
    """§4: partner, acceptance, body facts and ids may be absent: the replay treats them as null."""
    doc = entry()
    for key in ("partner", "acceptance", "body", "correlation_id", "customer", "reason"):
        del doc[key]
    call = read_line(json.dumps(doc).encode())
    assert isinstance(call, LoggedCall)
    assert (call.partner, call.acceptance, call.facts, call.reason) == (None, None, None, "")


def test_partner_is_compared_lowercased() -> None:
    """§1.1: tenant ids are case-insensitive; the replay uses the lowercased partner."""
    call = read_line(line(partner=PARTNER_A.upper()))
    assert isinstance(call, LoggedCall)
    assert call.partner == PARTNER_A


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param(b"garbage\n", Skip.NOT_JSON, id="garbage"),
        pytest.param(line()[:60], Skip.NOT_JSON, id="truncated"),
        pytest.param(b'{"event": "decision", "path": "\xff\xfe"}\n', Skip.NOT_JSON, id="not-utf8"),
        pytest.param(b'["event"]\n', Skip.NOT_JSON, id="json-array"),
        pytest.param(b"", Skip.NOT_JSON, id="empty"),
        pytest.param(b'{"event": "listening", "proxy": "x"}\n', Skip.OTHER, id="other-event"),
        pytest.param(b'{"msg": "hello"}\n', Skip.OTHER, id="foreign-json"),
        pytest.param(b'{"event": ["decision"]}\n', Skip.OTHER, id="odd-event"),
        pytest.param(line(method=None), Skip.INCOMPLETE, id="no-method"),
        pytest.param(line(path=7), Skip.INCOMPLETE, id="path-not-a-string"),
        pytest.param(line(decision="maybe"), Skip.INCOMPLETE, id="unknown-decision"),
        pytest.param(line(decision=None), Skip.INCOMPLETE, id="decision-null"),
        pytest.param(line(event="not_gated"), Skip.INCOMPLETE, id="not-gated-with-decision"),
        pytest.param(line(timestamp="yesterday"), Skip.INCOMPLETE, id="bad-time"),
        pytest.param(line(timestamp="2024-06-01T12:00:00"), Skip.INCOMPLETE, id="naive-time"),
    ],
)
def test_other_lines_are_skipped_with_a_reason(raw: bytes, why: Skip) -> None:
    """§4: lines that are not the gate's decision lines are skipped, never a crash."""
    assert read_line(raw) is why


def test_unknown_values_of_optional_fields_are_dropped() -> None:
    """§4: an acceptance or body value the replay does not know counts as not logged."""
    call = read_line(line(acceptance="perhaps", body="mystery"))
    assert isinstance(call, LoggedCall)
    assert (call.acceptance, call.facts) == (None, None)
