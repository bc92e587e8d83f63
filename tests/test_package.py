"""What a user installs is what the tests ran: the sdist and wheel hold every module, the suite
imports the installed package, and a wheel installed in a clean venv runs the gate (issue 23).
The suite runs the compiled build unless GATE_PURE_PYTHON=1 asked for pure Python (issue 27).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import gate
from tests.support import BUILD

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (ROOT / "gate").rglob("*")
    if path.suffix in {".py", ".typed"} and "__pycache__" not in path.parts
)


def _hot_modules() -> list[str]:
    """setup.py's HOT list as module names (gate.core.decide, ...): what mypyc compiles."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    (hot,) = [
        node.value for node in tree.body
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["HOT"]
    ]  # fmt: skip
    assert isinstance(hot, ast.List)
    paths = [element.value for element in hot.elts if isinstance(element, ast.Constant)]
    return [str(path).removesuffix(".py").replace("/", ".") for path in paths]


def _editable() -> bool:
    """Whether pip installed gate --editable (GATE_EDITABLE=1 scripts/test)."""
    # Asked of site-packages alone: an editable install's gate.egg-info in the checkout (on
    # sys.path for `tests`) carries no direct_url.json and would hide the installed metadata.
    purelib = sysconfig.get_paths()["purelib"]
    (installed,) = importlib.metadata.distributions(name="gate", path=[purelib])
    direct = installed.read_text("direct_url.json") or "{}"
    return bool(json.loads(direct).get("dir_info", {}).get("editable", False))


def _run(
    *args: str | Path, cwd: Path, timeout: float = 300, pure: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt")}
    env = {name: value for name, value in env.items() if not name.startswith("GATE_")}
    if pure:
        env["GATE_PURE_PYTHON"] = "1"
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def test_the_suite_imports_the_installed_gate() -> None:
    """The modules under test are the installed ones, not the checkout on sys.path."""
    if _editable():
        pytest.skip("gate is installed --editable (GATE_EDITABLE=1): this run tested the checkout")
    where = Path(gate.__file__).resolve()
    assert where.parent.parent == Path(sysconfig.get_paths()["purelib"]).resolve()
    assert not where.is_relative_to(ROOT / "gate")


def test_the_gate_under_test_is_the_build_asked_for() -> None:
    """The default run tests the compiled build: every hot module loaded from the mypyc-built
    extension; with GATE_PURE_PYTHON=1, none of them is."""
    hot = _hot_modules()
    assert "gate.core.decide" in hot and len(hot) > 10
    compiled = [
        name for name in hot
        if str(importlib.import_module(name).__file__).endswith(
            tuple(importlib.machinery.EXTENSION_SUFFIXES)
        )
    ]  # fmt: skip
    assert gate.build() == BUILD
    assert compiled == (hot if BUILD == "mypyc" else [])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`python -m build` from the checkout's files: (sdist, wheel), pure Python
    (GATE_PURE_PYTHON=1) to spare the tests a compile; scripts/test's own install is the
    compiled one."""
    out = tmp_path_factory.mktemp("dist")
    # From a copy of what git tracks (as a fresh clone has it, with today's edits): the build
    # writes gate.egg-info and build/ where it runs, which must not land in the checkout.
    clone = tmp_path_factory.mktemp("clone")
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    result = _run(sys.executable, "-m", "build", "--outdir", out, clone, cwd=clone, pure=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


@pytest.mark.timeout(300)
def test_the_wheel_holds_every_module(built: tuple[Path, Path]) -> None:
    """Every gate/**/*.py and py.typed is in the wheel; a module left out fails here."""
    with zipfile.ZipFile(built[1]) as wheel:
        names = set(wheel.namelist())
    assert len(SOURCES) > 40
    missing = [source for source in SOURCES if source not in names]
    assert missing == []
    assert [name for name in names if name.endswith(".so")] == []  # built pure, as asked
    assert built[1].name.endswith("-py3-none-any.whl")


@pytest.mark.timeout(300)
def test_the_sdist_builds_the_same_package(built: tuple[Path, Path]) -> None:
    """The sdist carries every module and what the wheel is built from."""
    with tarfile.open(built[0]) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    assert [source for source in SOURCES if source not in names] == []
    assert {"pyproject.toml", "README.md"} <= names


@pytest.mark.timeout(600)
def test_the_installed_wheel_runs_the_gate(built: tuple[Path, Path], tmp_path: Path) -> None:
    """A clean venv outside the checkout, the wheel installed: --help, check-config and demo."""
    home = tmp_path / "user"
    venv.create(home / "venv", with_pip=True)
    bin_dir = home / "venv" / "bin"
    install = _run(bin_dir / "python", "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", built[1], cwd=home)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    shown = _run(bin_dir / "gate", "--help", cwd=home, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "check-config" in shown.stdout and "serve" in shown.stdout
    checked = _run(bin_dir / "gate", "check-config", ROOT / "config" / "gate.toml", cwd=home)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    demo = _run(bin_dir / "gate", "demo", cwd=home, timeout=120)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "blocked" in demo.stdout.lower() and "allowed" in demo.stdout.lower()
    where = _run(bin_dir / "python", "-c", "import gate; print(gate.__file__)", cwd=home)
    assert Path(where.stdout.strip()).is_relative_to(home / "venv")
    version = _run(bin_dir / "gate", "--version", cwd=home, timeout=60)
    assert version.stdout.strip() == f"gate {gate.__version__} (pure Python)"
