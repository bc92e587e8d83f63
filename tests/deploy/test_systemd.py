"""deploy/gate.service: systemd accepts the unit, and it runs the gate the way the image does."""

from __future__ import annotations

import configparser
import shlex
import sys
from pathlib import Path

from gate.config import Settings
from tests.deploy.conftest import DEPLOY, image_config_path, run, tool

UNIT = DEPLOY / "gate.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keep the keys as written (ExecStart, not execstart)
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds no error or unknown key (the gate path pointed at this venv)."""
    analyze = tool("systemd-analyze")
    gate = Path(sys.executable).parent / "gate"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/gate/bin/gate", str(gate))
    assert str(gate) in text
    unit = tmp_path / "gate.service"
    unit.write_text(text, encoding="utf-8")
    result = run(analyze, "verify", str(unit))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "no warnings either (unknown keys only warn)"


def test_unit_serves_the_documented_config_and_stops_like_the_image() -> None:
    """Same config path as the image, SIGTERM to stop, SIGHUP to reload, time to drain."""
    service = _unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[1:] == ["serve", "--config", image_config_path()]
    assert service["KillSignal"] == "SIGTERM"
    assert "-HUP $MAINPID" in service["ExecReload"]
    stop_s = int(service["TimeoutStopSec"])
    assert stop_s > Settings().server.shutdown_grace_s
