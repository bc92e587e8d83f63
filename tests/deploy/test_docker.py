"""deploy/Dockerfile and the root .dockerignore: linted, true to the gate, built where possible."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import re
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from gate.config import Settings, parse_listen
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


def test_healthcheck_asks_the_admin_listener_of_the_image_config() -> None:
    """HEALTHCHECK queries /healthz on the admin port that the image's own config sets."""
    command = _healthcheck()
    assert command[:2] == ["python", "-c"], "slim images have no curl: the image's Python asks"
    url = re.search(r"http://([\d.]+):(\d+)(/\w+)", command[2])
    assert url is not None, command[2]
    host, port = parse_listen(Settings().admin.listen)  # the image copies config/gate.toml
    assert (url[1], int(url[2]), url[3]) == (host, port, "/healthz")


async def test_healthcheck_command_passes_on_a_live_gate_and_fails_on_a_dead_one(
    serve_gate: ServeGate,
) -> None:
    """The HEALTHCHECK one-liner, pointed at a running gate, exits 0; at a closed port, non-zero."""
    served = await serve_gate()
    code = _healthcheck()[2]
    live = code.replace("http://127.0.0.1:9090", served.admin_url)
    dead = code.replace("http://127.0.0.1:9090", f"http://127.0.0.1:{free_port()}")
    assert live != code
    for source, expect_ok in ((live, True), (dead, False)):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", source,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with asyncio.timeout(30):
                returncode = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert (returncode == 0) is expect_ok, source


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


def _docker_usable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    with contextlib.suppress(subprocess.TimeoutExpired):
        if run(docker, "info").returncode == 0:
            return docker
    return None


@pytest.mark.timeout(900)
def test_image_builds_runs_read_only_and_stops_on_sigterm() -> None:
    """With a Docker engine: build, run read-only without capabilities, healthy, clean stop."""
    docker = _docker_usable()
    if docker is None:
        pytest.skip("no usable Docker engine (`docker info` fails): the image is not built here")
    tag = f"gate-test:{secrets.token_hex(4)}"
    build = subprocess.run(
        [docker, "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)],
        capture_output=True, text=True, timeout=800, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]
    container = ""
    try:
        started = run(docker, "run", "-d", "--read-only", "--cap-drop", "ALL",
                      "--security-opt", "no-new-privileges", tag)  # fmt: skip
        assert started.returncode == 0, started.stderr
        container = started.stdout.strip()
        for _ in range(120):  # bounded: the healthcheck's start period plus a few intervals
            state = json.loads(run(docker, "inspect", "-f", "{{json .State}}", container).stdout)
            if state.get("Health", {}).get("Status") == "healthy" or not state["Running"]:
                break
            time.sleep(1)
        assert state["Running"] and state["Health"]["Status"] == "healthy", state
        ids = "import os; print(os.getuid(), os.getgid())"
        user = run(docker, "exec", container, "python", "-c", ids)
        assert user.stdout.split() == [str(image_user())] * 2
        stopped = run(docker, "stop", "--time", "40", container)
        assert stopped.returncode == 0, stopped.stderr
        exit_code = run(docker, "inspect", "-f", "{{.State.ExitCode}}", container).stdout
        assert exit_code.strip() == "0", "SIGTERM reaches the gate, which drains and exits 0"
    finally:
        if container:
            run(docker, "rm", "-f", container)
        run(docker, "rmi", "-f", tag)
