"""What one config changes against another, key by key, for a reviewer's single screen.

Plain keys are compared by their dotted names (``policy.enforce_percent:
100 -> 10``); per-partner overrides by tenant id; rules by name (added,
removed, changed field by field, or moved: rules are matched in file
order). Secrets are never printed: a changed ``admin.token`` shows as
``(changed)``, and ``acceptance.shared_url`` with its password masked.
"""

from __future__ import annotations

import json
from typing import Any

from gate.config import Settings, mask_url

__all__ = ["DEFAULTS", "changes", "defaults"]

DEFAULTS = "the built-in defaults"
_SECRET = frozenset({"admin.token"})
_URLS = frozenset({"acceptance.shared_url"})  # may carry a password
_SECTIONS = ("server", "admin", "upstream", "policy", "acceptance", "identity", "authz", "log")


def defaults() -> Settings:
    """The built-in settings, with no file and no GATE_* environment applied."""
    return Settings.model_construct()


def _shown(value: Any) -> str:
    return json.dumps(value) if value is not None else "(none)"


def _flat(settings: Settings) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for section in _SECTIONS:
        for key, value in getattr(settings, section).model_dump(mode="json").items():
            if not (section == "policy" and key == "partners"):
                found[f"{section}.{key}"] = value
    return found


def _keys(old: Settings, new: Settings) -> list[str]:
    before, after = _flat(old), _flat(new)
    lines = []
    for key, value in after.items():
        if before[key] == value:
            continue
        if key in _SECRET:
            lines.append(f"{key}: (changed)")
        elif key in _URLS and mask_url(before[key]) == mask_url(value):
            lines.append(f"{key}: (password changed)")
        elif key in _URLS:
            lines.append(f"{key}: {_shown(mask_url(before[key]))} -> {_shown(mask_url(value))}")
        else:
            lines.append(f"{key}: {_shown(before[key])} -> {_shown(value)}")
    return lines


def _partners(old: Settings, new: Settings) -> list[str]:
    before, after = old.policy.partners, new.policy.partners
    lines = []
    for tid in sorted(before.keys() | after.keys()):
        was = before[tid].mode if tid in before else None
        now = after[tid].mode if tid in after else None
        if was != now:
            lines.append(f'policy.partners."{tid}".mode: {_shown(was)} -> {_shown(now)}')
    return lines


def _rule_text(rule: dict[str, Any]) -> str:
    return f"{rule['method']} {rule['path']} -> {rule['transaction']}, when {rule['when']}"


def _rules(old: Settings, new: Settings) -> list[str]:
    before = {rule.name: rule.model_dump() for rule in old.rules}
    after = {rule.name: rule.model_dump() for rule in new.rules}
    lines = [f"rules: removed {name!r}" for name in before if name not in after]
    for name, rule in after.items():
        if name not in before:
            lines.append(f"rules: added {name!r} ({_rule_text(rule)})")
            continue
        for field, value in rule.items():
            if before[name][field] != value:
                lines.append(f"rules: {name!r} {field}: {_shown(before[name][field])} -> "
                             f"{_shown(value)}")  # fmt: skip
    kept = [name for name in after if name in before]
    if kept != [name for name in before if name in after]:
        lines.append(f"rules: order changed (now {', '.join(kept)})")
    return lines


def changes(old: Settings, new: Settings) -> list[str]:
    """One line per difference from ``old`` to ``new``; empty when they are the same."""
    return _keys(old, new) + _partners(old, new) + _rules(old, new)
