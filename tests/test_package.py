"""What a user installs is what the tests ran: the sdist and wheel hold every module, the suite
imports the installed package, and a wheel installed in a clean venv runs the gate (issue 23)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import gate

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (ROOT / "gate").rglob("*")
    if path.suffix in {".py", ".typed"} and "__pycache__" not in path.parts
)


def _editable() -> bool:
    """Whether pip installed gate --editable (GATE_EDITABLE=1 scripts/test)."""
    # Asked of site-packages alone: an editable install's gate.egg-info in the checkout (on
    # sys.path for `tests`) carries no direct_url.json and would hide the installed metadata.
    purelib = sysconfig.get_paths()["purelib"]
    (installed,) = importlib.metadata.distributions(name="gate", path=[purelib])
    direct = installed.read_text("direct_url.json") or "{}"
    return bool(json.loads(direct).get("dir_info", {}).get("editable", False))


def _run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt")}
    env = {name: value for name, value in env.items() if not name.startswith("GATE_")}
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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`python -m build` from the checkout: (sdist, wheel)."""
    out = tmp_path_factory.mktemp("dist")
    result = _run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
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
