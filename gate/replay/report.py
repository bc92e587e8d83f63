"""What a replay found: counts by transaction, old decision -> new decision, with examples.

A cell whose old and new decisions differ is a change. ``needs-lookup`` on
one side only is a change too (the replay cannot promise the decision
stays); on both sides it is not. Examples name ids only: time, method,
path, partner, correlation id, and the old and new reasons.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gate.replay.logline import LoggedCall, Skip
from gate.replay.redecide import Outcome

__all__ = ["EXAMPLES_PER_CELL", "Tally", "render_json", "render_text"]

EXAMPLES_PER_CELL = 3
_KINDS = ("new_purchase", "seat_change", "term_change", "confirmation")
_DECISIONS = (
    "allowed", "would-block", "blocked", "exempt", "not-gated", "pass", "needs-lookup"
)  # fmt: skip

Cell = tuple[str, str, str]  # (transaction, old decision, new decision)


def _order(cell: Cell) -> tuple[int, str, int, int]:
    kind, old, new = cell
    rank = _KINDS.index(kind) if kind in _KINDS else len(_KINDS)
    return rank, kind, _DECISIONS.index(old), _DECISIONS.index(new)


@dataclass(slots=True)
class Tally:
    """Counts and examples, filled one replayed call at a time."""

    lines: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    cells: Counter[Cell] = field(default_factory=Counter)
    examples: dict[Cell, list[dict[str, Any]]] = field(default_factory=dict)

    def skip(self, why: Skip) -> None:
        self.lines += 1
        self.skipped[why.value] += 1

    def add(self, call: LoggedCall, old: Outcome, new: Outcome) -> None:
        self.lines += 1
        cell = (call.transaction, old.decision, new.decision)
        self.cells[cell] += 1
        if _changed(cell):
            found = self.examples.setdefault(cell, [])
            if len(found) < EXAMPLES_PER_CELL:
                found.append(_example(call, old, new))

    @property
    def replayed(self) -> int:
        return sum(self.cells.values())

    @property
    def changed(self) -> int:
        return sum(count for cell, count in self.cells.items() if _changed(cell))


def _changed(cell: Cell) -> bool:
    return cell[1] != cell[2]


def _example(call: LoggedCall, old: Outcome, new: Outcome) -> dict[str, Any]:
    return {
        "timestamp": call.timestamp,
        "method": call.method,
        "path": call.path,
        "partner": call.partner,
        "customer": call.customer,
        "correlation_id": call.correlation_id,
        "old_reason": old.reason or None,
        "new_reason": new.reason or None,
    }


def render_json(tally: Tally, config: str, against: str | None) -> str:
    """The report for machines: one JSON document."""
    doc = {
        "config": config,
        "against": against,
        "lines": tally.lines,
        "replayed": tally.replayed,
        "skipped": {why.value: tally.skipped[why.value] for why in Skip},
        "changed": tally.changed,
        "cells": [
            {
                "transaction": cell[0],
                "old": cell[1],
                "new": cell[2],
                "calls": tally.cells[cell],
                "changed": _changed(cell),
                "examples": tally.examples.get(cell, []),
            }
            for cell in sorted(tally.cells, key=_order)
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def render_text(tally: Tally, config: str, against: str | None) -> str:
    """The report for a person: a table that fits a screen, then a few examples per change."""
    baseline = f"re-decided under {against}" if against else "as logged"
    out = [
        f"replayed {tally.replayed:,} gated calls under {config} (old: {baseline})",
    ]
    if tally.skipped:
        parts = ", ".join(f"{tally.skipped[w.value]:,} {w.value}" for w in Skip)
        out.append(f"skipped {sum(tally.skipped.values()):,} other lines ({parts})")
    out.append("")
    out.append(f"{'transaction':<14}{'old':<14}{'new':<14}{'calls':>10}")
    for cell in sorted(tally.cells, key=_order):
        mark = "  changed" if _changed(cell) else ""
        kind, old, new = cell
        out.append(f"{kind:<14}{old:<14}{new:<14}{tally.cells[cell]:>10,}{mark}")
    out.append("")
    if not tally.changed:
        out.append("no decision changes")
        return "\n".join(out) + "\n"
    out.append(f"{tally.changed:,} of {tally.replayed:,} calls change decision; examples:")
    for cell in sorted(tally.examples, key=_order):
        out.append(f"  {cell[0]}: {cell[1]} -> {cell[2]}")
        out.extend(f"    {_example_line(example)}" for example in tally.examples[cell])
    return "\n".join(out) + "\n"


def _example_line(example: dict[str, Any]) -> str:
    ids = f"partner {example['partner'] or '(unknown)'}"
    if example["correlation_id"]:
        ids += f" correlation {example['correlation_id']}"
    why = f"{example['old_reason'] or '-'} -> {example['new_reason'] or '-'}"
    return f"{example['timestamp']} {example['method']} {example['path']} {ids} ({why})"
