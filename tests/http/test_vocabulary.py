"""gate.http.vocabulary: the header vocabulary, and the gate's own X-Gate-Decision line."""

from __future__ import annotations

import pytest

from gate.core.policy import Verdict
from gate.http.vocabulary import HOP_BY_HOP, KINDS, NOT_FORWARDED, decision_line


@pytest.mark.parametrize("verdict", list(Verdict))
def test_each_verdict_has_its_header_line(verdict: Verdict) -> None:
    """§2 X-Gate-Decision: one line per verdict, as both front doors write it."""
    assert decision_line(verdict.value) == f"X-Gate-Decision: {verdict.value}\r\n".encode()
    assert decision_line(verdict) == decision_line(verdict.value)  # a StrEnum is its value


def test_no_decision_is_no_line() -> None:
    assert decision_line(None) == b""


def test_hop_by_hop_request_headers_are_never_forwarded() -> None:
    assert {name for name in HOP_BY_HOP if name in KINDS} <= NOT_FORWARDED
