"""The audit's report: one row per customer (CSV or JSON, streamed), and the summary.

Columns (DESIGN §4): ``customer``, ``company``, ``state`` (``confirmed`` |
``not_confirmed`` | ``unknown``), ``source`` (``agreement`` | ``direct`` |
``none``), ``agreement_type``, ``date_agreed``, ``reason`` (``no_agreement``,
``type_not_counted``, ``before_accepted_since``, ``lookup_error``; empty when
confirmed). Nothing else: no contact, no token.

Rows are written as they are decided (not in list order), so memory does not
grow with the number of customers; nothing at all (not even the CSV header)
before the first row or ``close()``, so a run that cannot start writes nothing.
CSV has a header row; a company name that a spreadsheet would run as a
formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is
written with a leading ``'`` (OWASP's advice against CSV injection). JSON is one
list of objects, one per line.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from typing import Literal, NamedTuple, Protocol, TextIO

from gate.acceptance.lookup import Finding
from gate.audit.customers import Customer
from gate.core.policy import State

__all__ = [
    "COLUMNS",
    "CsvWriter",
    "JsonWriter",
    "Row",
    "RowWriter",
    "Summary",
    "row_of",
    "writer_for",
]

COLUMNS = ("customer", "company", "state", "source", "agreement_type", "date_agreed", "reason")
_STATES = {
    State.ACCEPTED: "confirmed",
    State.NOT_ACCEPTED: "not_confirmed",
    State.UNKNOWN: "unknown",
}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class Row(NamedTuple):
    customer: str
    company: str
    state: str
    source: str
    agreement_type: str
    date_agreed: str
    reason: str


def row_of(customer: Customer, finding: Finding) -> Row:
    """The report's row for what R4 found for one customer."""
    unknown = finding.state is State.UNKNOWN
    return Row(
        customer.id,
        customer.company,
        _STATES[finding.state],
        "none" if unknown else finding.source,
        finding.agreement_type,
        finding.date_agreed,
        "lookup_error" if unknown else finding.reason,
    )


class RowWriter(Protocol):
    def write(self, row: Row) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    """CSV with a header row, written as rows come."""

    def __init__(self, out: TextIO) -> None:
        self._csv = csv.writer(out, lineterminator="\n")
        self._out = out
        self._started = False

    def write(self, row: Row) -> None:
        if not self._started:
            self._start()
        company = row.company
        if company.startswith(_FORMULA):
            company = "'" + company
        self._csv.writerow(row._replace(company=company))

    def close(self) -> None:
        if not self._started:
            self._start()
        self._out.flush()

    def _start(self) -> None:
        self._started = True
        self._csv.writerow(COLUMNS)


class JsonWriter:
    """A JSON list of objects, one object per line, written as rows come."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._first = True

    def write(self, row: Row) -> None:
        self._out.write("[\n" if self._first else ",\n")
        self._out.write(json.dumps(row._asdict(), ensure_ascii=False))
        self._first = False

    def close(self) -> None:
        self._out.write("[]\n" if self._first else "\n]\n")
        self._out.flush()


def writer_for(kind: Literal["csv", "json"], out: TextIO) -> RowWriter:
    return CsvWriter(out) if kind == "csv" else JsonWriter(out)


class Summary:
    """Counts by state, and by source (confirmed) or reason (the others)."""

    def __init__(self) -> None:
        self.states: Counter[str] = Counter()
        self.details: Counter[tuple[str, str]] = Counter()

    def add(self, row: Row) -> None:
        self.states[row.state] += 1
        self.details[row.state, row.source if row.state == "confirmed" else row.reason] += 1

    @property
    def total(self) -> int:
        return sum(self.states.values())

    def exit_code(self) -> int:
        """0 when every customer is confirmed (also when there is none), else 1."""
        return 0 if self.states["confirmed"] == self.total else 1

    def lines(self) -> list[str]:
        states = ("confirmed", "not_confirmed", "unknown")
        counts = ", ".join(f"{self.states[state]} {state}" for state in states)
        lines = [f"{self.total} customers: {counts}"]
        for state in states:
            parts = sorted((k[1], n) for k, n in self.details.items() if k[0] == state)
            if parts:
                by = "by source" if state == "confirmed" else "by reason"
                shown = ", ".join(f"{name} {n}" for name, n in parts)
                lines.append(f"  {state:<14} {by}: {shown}")
        return lines
