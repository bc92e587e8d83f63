"""Every module of gate/ lists its public names in __all__, and each one exists (STYLE 19)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import gate

# Importing gate.__main__ runs the CLI; it defines nothing.
NOT_IMPORTED = {"gate.__main__"}
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(gate.__path__, prefix="gate.")
    if info.name not in NOT_IMPORTED and not info.ispkg
)


def test_modules_found() -> None:
    """STYLE 19: the check sees the package's modules (it would pass vacuously otherwise)."""
    assert {"gate.core.classify", "gate.config", "gate.http.upstream"} <= set(MODULES)


@pytest.mark.parametrize("name", [*MODULES, "gate"])
def test_module_has_all(name: str) -> None:
    """STYLE 19: each module declares its public names, and every name it lists exists."""
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__ list"
    assert exported, f"{name}.__all__ is empty"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [member for member in exported if not hasattr(module, member)]
    assert missing == [], f"{name}.__all__ lists names it does not define"
    private = [member for member in exported if member.startswith("_") and member != "__version__"]
    assert private == [], f"{name}.__all__ exports private names"
