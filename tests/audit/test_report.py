"""The audit's rows, writers and summary (pure)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gate.acceptance.lookup import Finding
from gate.audit.customers import Customer
from gate.audit.report import COLUMNS, CsvWriter, JsonWriter, Row, Summary, row_of
from gate.core.policy import State

CUSTOMER = Customer("c0ffee00-1234-4321-abcd-0123456789ab", "Contoso")


@pytest.mark.parametrize(
    ("finding", "state", "source", "reason"),
    [
        pytest.param(
            Finding(State.ACCEPTED, "agreement"), "confirmed", "agreement", "", id="agreement"
        ),
        pytest.param(Finding(State.ACCEPTED, "direct"), "confirmed", "direct", "", id="direct"),
        pytest.param(
            Finding(State.NOT_ACCEPTED, reason="no_agreement"), "not_confirmed", "none",
            "no_agreement", id="none",
        ),
        pytest.param(
            Finding(State.UNKNOWN, reason="lookup_error", throttled=True), "unknown", "none",
            "lookup_error", id="throttled",
        ),
        pytest.param(
            Finding(State.UNKNOWN, "agreement", reason=""), "unknown", "none", "lookup_error",
            id="unknown-always-lookup-error",
        ),
    ],
)  # fmt: skip
def test_row_of(finding: Finding, state: str, source: str, reason: str) -> None:
    """A Finding becomes DESIGN §4's state, source and reason values."""
    row = row_of(CUSTOMER, finding)
    assert (row.state, row.source, row.reason) == (state, source, reason)
    assert (row.customer, row.company) == (CUSTOMER.id, "Contoso")


def test_csv_header_and_formula_guard() -> None:
    """CSV has the header row; a company a spreadsheet would run as a formula is defused."""
    out = io.StringIO()
    writer = CsvWriter(out)
    writer.write(Row("a", '=HYPERLINK("x")', "confirmed", "agreement", "T", "D", ""))
    writer.write(Row("b", "Fabrikam, Inc.\nEurope", "not_confirmed", "none", "", "", "x"))
    writer.close()
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == list(COLUMNS)
    assert rows[1][1] == '\'=HYPERLINK("x")'
    assert rows[2][1] == "Fabrikam, Inc.\nEurope"  # quoted, read back whole


@pytest.mark.parametrize("count", [0, 1, 3])
def test_json_is_one_list(count: int) -> None:
    """JSON output is a list of objects with exactly the columns, also when empty."""
    out = io.StringIO()
    writer = JsonWriter(out)
    for n in range(count):
        writer.write(Row(str(n), "Ünïcode", "confirmed", "direct", "", "", ""))
    writer.close()
    doc = json.loads(out.getvalue())
    assert [tuple(item) for item in doc] == [COLUMNS] * count
    assert all(item["company"] == "Ünïcode" for item in doc)


def test_summary_counts_and_exit_code() -> None:
    """Counts by state, then by source (confirmed) or reason; exit 0 only if all are confirmed."""
    summary = Summary()
    assert summary.exit_code() == 0  # no customer: none would be blocked
    summary.add(Row("a", "", "confirmed", "agreement", "", "", ""))
    summary.add(Row("b", "", "confirmed", "direct", "", "", ""))
    assert summary.exit_code() == 0
    summary.add(Row("c", "", "not_confirmed", "none", "", "", "no_agreement"))
    summary.add(Row("d", "", "unknown", "none", "", "", "lookup_error"))
    assert summary.exit_code() == 1
    assert summary.lines() == [
        "4 customers: 2 confirmed, 1 not_confirmed, 1 unknown",
        "  confirmed      by source: agreement 1, direct 1",
        "  not_confirmed  by reason: no_agreement 1",
        "  unknown        by reason: lookup_error 1",
    ]
