"""gate.replay.report: counts by transaction, old -> new, and a few id-only examples per change."""

from __future__ import annotations

import json

from gate.replay.logline import LoggedCall, Skip, read_line
from gate.replay.redecide import NEEDS_LOOKUP, Outcome
from gate.replay.report import EXAMPLES_PER_CELL, Tally, render_json, render_text
from tests.replay.logs import line
from tests.support import CONTACT_EMAIL, CONTACT_FIRST

BLOCKED = Outcome("blocked", "not_accepted", "new_purchase")
OBSERVED = Outcome("would-block", "observe_mode", "new_purchase")


def _call(index: int = 0) -> LoggedCall:
    found = read_line(line(correlation_id=f"corr-{index}"))
    assert isinstance(found, LoggedCall)
    return found


def _tally() -> Tally:
    tally = Tally()
    for index in range(5):
        tally.add(_call(index), BLOCKED, OBSERVED)
    tally.add(_call(), BLOCKED, BLOCKED)
    tally.add(_call(), BLOCKED, Outcome(NEEDS_LOOKUP, "acceptance"))
    tally.add(_call(), Outcome(NEEDS_LOOKUP, "body"), Outcome(NEEDS_LOOKUP, "body"))
    tally.skip(Skip.NOT_JSON)
    tally.skip(Skip.OTHER)
    return tally


def test_counts_and_changes() -> None:
    """§4: a cell is changed when old and new decisions differ; needs-lookup on both is not."""
    tally = _tally()
    assert (tally.lines, tally.replayed, tally.changed) == (10, 8, 6)
    assert tally.cells[("new_purchase", "blocked", "would-block")] == 5


def test_examples_are_few_and_name_ids_only() -> None:
    """§4: a few examples per changed cell, ids and reasons only."""
    tally = _tally()
    examples = tally.examples[("new_purchase", "blocked", "would-block")]
    assert len(examples) == EXAMPLES_PER_CELL
    assert examples[0]["correlation_id"] == "corr-0"
    assert set(examples[0]) == {"timestamp", "method", "path", "partner", "customer",
                                "correlation_id", "old_reason", "new_reason"}  # fmt: skip
    assert ("new_purchase", "blocked", "blocked") not in tally.examples


def test_text_report() -> None:
    """§4: the text report is a table by transaction, old -> new, then examples of changes."""
    text = render_text(_tally(), "new.toml", None)
    lines = text.splitlines()
    assert lines[0] == "replayed 8 gated calls under new.toml (old: as logged)"
    assert lines[1] == "skipped 2 other lines (1 not_json, 1 other, 0 incomplete)"
    assert lines[3].split() == ["transaction", "old", "new", "calls"]
    rows = [row.split() for row in lines[4:8]]
    assert rows == [
        ["new_purchase", "blocked", "would-block", "5", "changed"],
        ["new_purchase", "blocked", "blocked", "1"],
        ["new_purchase", "blocked", "needs-lookup", "1", "changed"],
        ["new_purchase", "needs-lookup", "needs-lookup", "1"],
    ]
    assert "6 of 8 calls change decision; examples:" in lines
    assert "  new_purchase: blocked -> would-block" in lines
    assert any("correlation corr-0 (not_accepted -> observe_mode)" in row for row in lines)
    assert CONTACT_EMAIL not in text and CONTACT_FIRST not in text


def test_text_report_without_changes() -> None:
    """§4: a replay that changes nothing says so."""
    tally = Tally()
    tally.add(_call(), BLOCKED, BLOCKED)
    text = render_text(tally, "new.toml", "old.toml")
    first = text.splitlines()[0]
    assert first == "replayed 1 gated calls under new.toml (old: re-decided under old.toml)"
    assert text.endswith("no decision changes\n")


def test_json_report_shape() -> None:
    """§4 --json: one document with counts, skips by reason, and cells with examples."""
    doc = json.loads(render_json(_tally(), "new.toml", None))
    assert set(doc) == {"config", "against", "lines", "replayed", "skipped", "changed", "cells"}
    assert doc["skipped"] == {"not_json": 1, "other": 1, "incomplete": 0}
    assert (doc["lines"], doc["replayed"], doc["changed"]) == (10, 8, 6)
    first = doc["cells"][0]
    assert set(first) == {"transaction", "old", "new", "calls", "changed", "examples"}
    assert (first["old"], first["new"], first["calls"], first["changed"]) == (
        "blocked", "would-block", 5, True
    )  # fmt: skip
    assert sum(cell["calls"] for cell in doc["cells"]) == doc["replayed"]
