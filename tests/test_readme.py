"""The README's configuration table tells the truth about every key (DESIGN §3)."""

from __future__ import annotations

import re
from pathlib import Path

from gate.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
_ROW = re.compile(r"^\| `(\w+)\.(\w+)` \| `([^`]*)` \| `GATE_(\w+)__(\w+)` \|", re.M)


def _documented() -> dict[str, tuple[str, str]]:
    return {
        f"{section}.{key}": (default, f"{env_section}.{env_key}".lower())
        for section, key, default, env_section, env_key in _ROW.findall(README.read_text())
    }


def _defaults() -> dict[str, str]:
    settings = Settings()
    found: dict[str, str] = {}
    for section in ("server", "admin", "upstream", "policy", "acceptance", "identity", "authz"):
        for key, value in getattr(settings, section).model_dump(mode="json").items():
            if not isinstance(value, dict):
                found[f"{section}.{key}"] = value
    for key, value in settings.log.model_dump().items():
        found[f"log.{key}"] = value
    return found


def test_every_key_is_documented_with_its_default_and_variable() -> None:
    """§3: each config key appears in the README with the built-in default and GATE_ name."""
    documented = _documented()
    for key, value in _defaults().items():
        assert key in documented, f"README lacks {key}"
        default, env = documented[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(value, list):  # written as in TOML
            shown = "[" + ", ".join(f'"{item}"' for item in value) + "]"
        shown = '""' if value is None else shown or '""'  # empty (or unset) is written ""
        if key == "policy.enforce_from":
            shown = "2018-11-07T00:00:00Z"
        assert default == shown, f"{key}: README says {default!r}, code says {shown!r}"
        assert env == key, f"{key}: README names GATE_{env.replace('.', '__').upper()}"
