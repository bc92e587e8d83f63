"""tests/ mirrors gate/: each module with logic has its test_<module>.py, or contract tests.

Like mitmproxy's filename_matching check (STYLE 28): a new module without
tests, or a test file named after no module, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gate"
TESTS = ROOT / "tests"

# Modules without a unit file: glue with no branching of its own (app factories, the demo, the
# sandbox upstream, the runtime value), proven by every socket test that starts them.
COVERED_ELSEWHERE = {
    # not glue: it has logic of its own; a unit file is still owed
    "app": "app factories, glue: every contract test starts one",
    "demo": "run end to end as `gate demo` by tests/test_cli.py",
    "runtime": "glue: settings compiled into one value, no branch; read by tests/core/*",
    "sandbox": "the test upstream itself: every socket test runs against it",
}
# Test files about the package as a whole, not one module.
PACKAGE_WIDE = {"exports", "layout", "package", "readme"}


def has_logic(path: Path) -> bool:
    """A module defines at least one function or method (constants and AppKeys do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) for node in ast.walk(tree))


def _name(path: Path, root: Path, prefix: str = "") -> str:
    """``core/classify`` for gate/core/classify.py and tests/core/test_classify.py."""
    relative = path.relative_to(root)
    return "/".join([*relative.parent.parts, relative.stem.removeprefix(prefix)])


MODULES = {
    _name(path, PACKAGE): path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"
}
WITH_LOGIC = {name for name, path in MODULES.items() if has_logic(path)}
UNIT_TESTS = {
    _name(path, TESTS, "test_")
    for path in TESTS.rglob("test_*.py")
    # contract tests go by DESIGN section; tests/deploy/ checks deploy/, tests/fuzz/ the fuzzers
    if not {"contract", "deploy", "fuzz"} & set(path.relative_to(TESTS).parts)
}


def test_layout_sees_the_package() -> None:
    """STYLE 28: the check finds gate's modules and tests (it would pass vacuously otherwise)."""
    assert {"core/classify", "config", "core/policy", "pipeline"} <= WITH_LOGIC
    assert {"core/classify", "config", "layout"} <= UNIT_TESTS
    assert "keys" not in WITH_LOGIC  # AppKeys and a plain dataclass: nothing to test


def test_every_module_with_logic_is_tested() -> None:
    """STYLE 28: each gate/X.py with logic has tests/test_X.py or is listed as covered elsewhere."""
    untested = WITH_LOGIC - UNIT_TESTS - COVERED_ELSEWHERE.keys()
    assert untested == set(), f"add tests/test_<module>.py or a COVERED_ELSEWHERE entry: {untested}"


def test_every_test_file_names_a_module() -> None:
    """STYLE 28: each tests/test_X.py mirrors a gate/X.py, so the mirror stays navigable."""
    strays = UNIT_TESTS - MODULES.keys() - PACKAGE_WIDE
    assert strays == set(), f"rename to match a gate module or add to PACKAGE_WIDE: {strays}"


def test_allow_list_stays_small_and_true() -> None:
    """STYLE 28: every allow-listed module exists, has logic and has no unit file of its own."""
    listed = COVERED_ELSEWHERE.keys()
    assert listed <= WITH_LOGIC, f"stale entries: {listed - WITH_LOGIC}"
    assert not listed & UNIT_TESTS, f"now unit-tested, drop from the list: {listed & UNIT_TESTS}"


def test_contract_suite_exists() -> None:
    """STYLE 28: the modules listed as covered by contract tests have a contract suite to be in."""
    assert (TESTS / "contract" / "__init__.py").is_file()
    assert list((TESTS / "contract").glob("test_*.py"))
