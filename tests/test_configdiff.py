"""gate.configdiff: what a config changes, key by key, rules by name, overrides by tenant."""

from __future__ import annotations

import pytest

from gate.config import Settings
from gate.configdiff import changes, defaults
from tests.support import PARTNER_A, PARTNER_B


def test_defaults_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """§3: the built-in defaults are the baseline, whatever GATE_* says."""
    monkeypatch.setenv("GATE_POLICY__MODE", "observe")
    assert defaults().policy.mode == "enforce"
    assert changes(defaults(), Settings()) == ['policy.mode: "enforce" -> "observe"']


def test_no_changes() -> None:
    """§4: a config equal to the baseline changes nothing."""
    assert changes(defaults(), Settings()) == []


def test_keys_overrides_and_secrets() -> None:
    """§4: dotted keys old -> new, per-partner overrides by id; a token's value is never shown."""
    old = Settings(policy={"partners": {PARTNER_B: {"mode": "observe"}}})
    new = Settings(
        policy={"enforce_percent": 10, "partners": {PARTNER_A: {"mode": "off"}}},
        admin={"token": "s3cret-value"},
    )
    lines = changes(old, new)
    assert lines == [
        "admin.token: (changed)",
        "policy.enforce_percent: 100 -> 10",
        f'policy.partners."{PARTNER_A}".mode: (none) -> "off"',
        f'policy.partners."{PARTNER_B}".mode: "observe" -> (none)',
    ]
    assert not any("s3cret" in line for line in lines)


def test_a_shared_url_is_shown_with_its_password_masked() -> None:
    """§4/§6: acceptance.shared_url changes are shown, its password never."""
    old = Settings(acceptance={"shared_url": "redis://:s3cret-a@redis:6379/0"})
    moved = Settings(acceptance={"shared_url": "redis://:s3cret-b@other:6379/0"})
    rotated = Settings(acceptance={"shared_url": "redis://:s3cret-b@redis:6379/0"})
    assert changes(old, moved) == [
        'acceptance.shared_url: "redis://:***@redis:6379/0" -> "redis://:***@other:6379/0"'
    ]
    assert changes(old, rotated) == ["acceptance.shared_url: (password changed)"]


def test_rules_by_name() -> None:
    """§4: rules added, removed, changed field by field, and reordered are each one line."""
    rules = [rule.model_dump() for rule in defaults().rules]
    edited = [
        {**rule, "when": "always"} if rule["name"] == "add-order-line-items" else rule
        for rule in rules
        if rule["name"] != "cart-checkout"
    ]
    edited.append({"name": "renewal", "method": "POST", "path": "/v1/customers/{customer}/renew",
                   "transaction": "new_purchase"})  # fmt: skip
    lines = changes(defaults(), Settings(rules=edited))
    assert lines == [
        "rules: removed 'cart-checkout'",
        """rules: 'add-order-line-items' when: "adds_line_items" -> "always\"""",
        "rules: added 'renewal' (POST /v1/customers/{customer}/renew -> new_purchase, when always)",
    ]
    moved = Settings(rules=[rules[1], rules[0], *rules[2:]])
    assert changes(defaults(), moved)[0].startswith(
        "rules: order changed (now add-order-line-items, create-order"
    )
