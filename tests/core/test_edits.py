"""gate.core.edits: which subscription fields an edit names and changes, and its kind (§1.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gate.config import EDIT_FIELDS
from gate.core import body, edits

CURRENT = {"quantity": 10, "termduration": "P1Y", "billingcycle": "monthly"}


def body_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("doc", "changed", "kind"),
    [
        pytest.param({"Quantity": 11}, ("quantity",), "seat_change", id="quantity"),
        pytest.param({"quantity": "10"}, (), None, id="same-quantity-as-string"),
        pytest.param({"TermDuration": "P1M"}, ("termDuration",), "term_change", id="term"),
        pytest.param({"billingCycle": "MONTHLY"}, (), None, id="same-billing-any-case"),
        pytest.param({"scheduledNextTermInstructions": {}}, ("scheduledNextTermInstructions",),
                     "term_change", id="next-term-set"),
        pytest.param({"scheduledNextTermInstructions": None}, (), None, id="next-term-null"),
        pytest.param({"quantity": 11, "billingCycle": "annual"}, ("quantity", "billingCycle"),
                     "seat_change", id="both"),
        pytest.param({"status": "suspended"}, (), None, id="no-edit-field"),
    ],
)  # fmt: skip
def test_changed_and_kind(doc: dict[str, Any], changed: tuple[str, ...], kind: str | None) -> None:
    """§1.2: a field counts when named with another value; quantity makes a seat change."""
    found = edits.changed(body.parse(body_json(doc)), CURRENT, EDIT_FIELDS)
    assert found == changed
    assert edits.kind_of(found) == kind


def test_unreadable_current_counts_every_named_field() -> None:
    """§1.1: the current subscription unreadable: every named field counts as changed."""
    doc = body.parse(body_json({"quantity": 10, "billingCycle": "monthly"}))
    assert edits.changed(doc, None, EDIT_FIELDS) == ("quantity", "billingCycle")


def test_only_listed_fields_count_and_facts_name_them() -> None:
    """§1.2: fields outside policy.subscription_edits are not looked at; facts list the named."""
    doc = body.parse(body_json({"termDuration": "P1M", "quantity": 3}))
    assert edits.named(doc, ("quantity",)) == ("quantity",)
    assert edits.facts(doc, EDIT_FIELDS) == "fields:quantity+termDuration"
    assert edits.named(body.NOT_JSON, ("quantity",)) == ("quantity",)
