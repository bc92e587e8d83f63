"""Every gate config shipped under deploy/ is one `gate serve` accepts, and holds no secret."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, settings_from_toml

CONFIGS = sorted(DEPLOY.rglob("gate.toml"))


def test_configs_are_found() -> None:
    """The compose config, the base's and the overlay's (a pass over nothing proves nothing)."""
    assert {p.parent.name for p in CONFIGS} == {"compose", "base", "production"}


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(DEPLOY)) for p in CONFIGS])
def test_config_loads_and_has_no_token(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gate.config.load accepts the file; admin.token is left to a Secret or the environment."""
    text = path.read_text(encoding="utf-8")
    settings = settings_from_toml(text, tmp_path, monkeypatch)
    assert settings.admin.token == ""
    assert "token" not in tomllib.loads(text).get("admin", {})
