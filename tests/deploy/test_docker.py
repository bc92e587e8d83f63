"""deploy/Dockerfile and the root .dockerignore: linted and true to the gate (built: test_image)."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import subprocess
from pathlib import Path

from tests.contract.conftest import ServeGate, free_port
from tests.deploy.conftest import (
    DEPLOY,
    ROOT,
    dockerfile,
    exec_form,
    image_config_path,
    image_user,
    run,
    tool,
)
from tests.support import GATE_COMMAND


def _dockerfile_source() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def _healthcheck() -> list[str]:
    arguments = dict(dockerfile())["HEALTHCHECK"]
    options, _, command = arguments.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options, options
    return exec_form(command)


def test_hadolint_finds_nothing() -> None:
    """hadolint (every rule, failure threshold info) has nothing to say about the Dockerfile."""
    result = run(tool("hadolint"), "--failure-threshold", "info", str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_is_really_linting() -> None:
    """The same hadolint call rejects a Dockerfile with known mistakes (so a pass counts)."""
    bad = "FROM python:latest\nRUN cd /tmp && pip install aiohttp\n"
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", "-"],
        input=bad, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_image_is_multi_stage_slim_and_non_root() -> None:
    """Build stage and run stage from a slim Python; a numeric non-root user; exec-form signals."""
    instructions = dockerfile()
    bases = [args for name, args in instructions if name == "FROM"]
    assert len(bases) >= 2, "multi-stage: a build stage and a run stage"
    default_base = next(args for name, args in instructions if name == "ARG" and "IMAGE=" in args)
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[1-9]-slim(-\w+)?", default_base), default_base
    assert image_user() >= 1000
    config = dict(instructions)
    assert config["STOPSIGNAL"] == "SIGTERM"
    assert exec_form(config["ENTRYPOINT"]) == ["gate"]
    cmd = exec_form(config["CMD"])
    assert cmd[0] == "serve"
    assert any(
        name == "COPY" and args.split()[-1] == image_config_path() for name, args in instructions
    ), "the default config is copied to the path the command reads"


def test_healthcheck_runs_gate_health_on_the_image_config() -> None:
    """HEALTHCHECK runs `gate health` with the config the command serves: the effective admin
    listener (GATE_ADMIN__LISTEN too) and its TLS, never a hard-coded URL."""
    command = _healthcheck()
    assert command == ["gate", "health", "--config", image_config_path()]
    assert "http://" not in _dockerfile_source()


async def test_healthcheck_command_passes_on_a_live_gate_and_fails_on_a_dead_one(
    serve_gate: ServeGate, tmp_path: Path
) -> None:
    """The HEALTHCHECK command (the installed gate), on a running gate's config, exits 0; on a
    config whose admin port nobody serves, 1."""
    served = await serve_gate()
    dead = tmp_path / "dead.toml"
    dead.write_text(f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n')
    command = _healthcheck()
    assert command[0] == "gate"
    for config, expect_ok in ((served.config, True), (dead, False)):
        arguments = [*GATE_COMMAND, *command[1:-1], str(config)]
        process = await asyncio.create_subprocess_exec(
            *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        async with asyncio.timeout(30):
            out, _ = await process.communicate()
        assert (process.returncode == 0) is expect_ok, out


def test_image_hygiene() -> None:
    """No `# syntax=` line (an offline BuildKit build cannot fetch it); pip in the build obeys
    constraints.txt (PIP_CONSTRAINT reaches the isolated build env: the backend is pinned); pip
    and setuptools leave the runtime venv; OCI labels carry version, revision and source."""
    source = _dockerfile_source()
    assert "# syntax=" not in source
    instructions = dockerfile()
    build_env = next(args for name, args in instructions if name == "ENV" and "PIP_" in args)
    assert "PIP_CONSTRAINT=/src/constraints.txt" in build_env.split()
    assert any(name == "COPY" and "constraints.txt" in args.split()[:-1] and
               args.split()[-1] in ("./", "/src/") for name, args in instructions)  # fmt: skip
    install = next(args for name, args in instructions if name == "RUN" and "pip install" in args)
    assert "pip uninstall --yes pip setuptools" in install
    labels = next(args for name, args in instructions if name == "LABEL")
    for key, arg in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
        assert any(name == "ARG" and args.startswith(f"{arg}=") for name, args in instructions)
    assert "sha256:" in source or "digest" in source, "pin the base by digest, or say why not"


def test_dockerignore_sends_exactly_what_the_dockerfile_copies() -> None:
    """The root .dockerignore is an allow-list admitting every COPY source (context: the root)."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "allow-list: everything is excluded first"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    sources = []
    for name, args in dockerfile():
        if name == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        source = source.removeprefix("./").rstrip("/")
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert any(fnmatch.fnmatch(source, pattern) for pattern in allowed), (
            f"COPY {source} is excluded by .dockerignore"
        )
    assert "tests" not in allowed and ".venv" not in allowed
