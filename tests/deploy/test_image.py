"""deploy/Dockerfile built and run for real (marker ``image``; ``.ci/run`` runs ``-m image``).

A private engine is started for the module (``tests.deploy.engine``: Debian's
dockerd under a temp folder, stopped by its PID); the base image is pulled, or
made locally when the registry cannot be reached (which the run says). The image
is built once, with ``--network host`` and the machine's CA bundle as the build
secret ``ca``; each test runs containers on the host network in front of the
sandbox Partner Center that the test serves on loopback. Where no engine can be
started (no root, no dockerd), every test skips with the reason; it never fails
for that.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gate import __version__
from tests.conftest import Upstream
from tests.contract.conftest import free_port
from tests.deploy.conftest import DEPLOY, ROOT, image_config_path, image_user
from tests.deploy.engine import CA_BUNDLE, Engine, EngineUnavailable, ensure_base

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]  # the first one builds

_BASE = "python:3.11-slim"  # the Dockerfile's PYTHON_IMAGE default


@dataclass
class Built:
    engine: Engine
    tag: str
    revision: str

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.engine.docker(*args, timeout=timeout)

    def gate(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``docker run --rm IMAGE ARGS``: the image's entrypoint (gate) with ``args``."""
        return self.docker("run", "--rm", "--network", "host", self.tag, *args)


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """A line on the terminal now, past output capture: what the run did and how long it took."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[image] {line}")


@pytest.fixture(scope="module")
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """The engine, the base, the image: made once for the module; the engine stopped by PID."""
    try:
        engine = Engine.start(tmp_path_factory.mktemp("engine"))
    except EngineUnavailable as error:
        pytest.skip(f"no Docker engine can be started here: {error}")
    try:
        _say(request, ensure_base(engine, _BASE))
        tag = f"gate-test:{secrets.token_hex(4)}"
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                  text=True, check=False).stdout.strip() or "unknown"  # fmt: skip
        secret = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.exists() else []
        started = time.monotonic()
        build = engine.docker(
            "build", "--network", "host", *secret, "-f", str(DEPLOY / "Dockerfile"), "-t", tag,
            "--build-arg", f"VERSION={__version__}", "--build-arg", f"REVISION={revision}",
            "--build-arg", "SOURCE=https://example.invalid/gate", str(ROOT), timeout=900,
        )  # fmt: skip
        assert build.returncode == 0, build.stderr[-4000:]
        engine.timings["image build"] = time.monotonic() - started
        size = engine.docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip()
        timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in engine.timings.items())
        _say(request, f"{tag}: {int(size) / 1e6:.0f} MB; {timings}")
        yield Built(engine, tag, revision)
    finally:
        engine.stop()


def test_the_image_runs_the_installed_gate(built: Built) -> None:
    """`gate --help` and `gate check-config` of the image's own config work in the image."""
    helped = built.gate("--help")
    assert helped.returncode == 0, helped.stderr
    assert "check-config" in helped.stdout and "health" in helped.stdout
    checked = built.gate("check-config", image_config_path())
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{image_config_path()}: ok")


def test_the_image_runs_the_compiled_build(built: Built) -> None:
    """The build stage compiles the hot path with mypyc (issue 27): the image says so."""
    version = built.gate("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().endswith("(compiled: mypyc)")


def test_the_runtime_venv_holds_no_pip_or_setuptools_and_the_labels_are_set(built: Built) -> None:
    """Hygiene: no pip, setuptools or pkg_resources at run time; OCI labels from build args."""
    probe = "import importlib.util as u; print([m for m in ('pip', 'setuptools', 'pkg_resources', '_distutils_hack', 'gate.acceptance') if u.find_spec(m)])"  # noqa: E501
    found = built.docker("run", "--rm", "--entrypoint", "python", built.tag, "-c", probe)
    assert found.stdout.strip() == "['gate.acceptance']", found.stdout + found.stderr
    labels = json.loads(built.docker("image", "inspect", "-f", "{{json .Config.Labels}}",
                                     built.tag).stdout)  # fmt: skip
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"] == "https://example.invalid/gate"
    assert labels["org.opencontainers.image.revision"] == built.revision


async def _run(built: Built, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(built.docker, *args)


async def _healthy(built: Built, container: str, bound_s: float = 90) -> dict[str, object]:
    """The container's State once its HEALTHCHECK says healthy (or it stopped): bounded."""
    deadline = time.monotonic() + bound_s
    while True:
        inspected = await _run(built, "inspect", "-f", "{{json .State}}", container)
        state = json.loads(inspected.stdout)
        health = state.get("Health") or {}
        if health.get("Status") == "healthy" or not state["Running"]:
            return dict(state)
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.5)


async def _start(built: Built, upstream: Upstream, *env: str) -> tuple[str, int, int]:
    """A read-only, capability-free container serving on free loopback ports (host network)."""
    proxy, admin = free_port(), free_port()
    settings = [
        f"GATE_SERVER__LISTEN=127.0.0.1:{proxy}",
        f"GATE_ADMIN__LISTEN=127.0.0.1:{admin}",  # moved: the HEALTHCHECK must follow it
        f"GATE_UPSTREAM__URL={upstream.url}",
        "GATE_SERVER__SHUTDOWN_GRACE_S=20",
        *env,
    ]
    started = await _run(
        built, "run", "-d", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--network", "host",
        "--health-interval", "1s",  # the image's HEALTHCHECK command, asked more often
        *(part for setting in settings for part in ("-e", setting)), built.tag,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    return started.stdout.strip(), proxy, admin


async def test_serve_is_healthy_read_only_non_root_and_drains_on_sigterm(
    built: Built, upstream: Upstream
) -> None:
    """§5 in the image: healthy through its HEALTHCHECK with the admin listener moved by env,
    read-only root, uid 10001, proxies; SIGTERM lets an in-flight call finish and exits 0."""
    container, proxy, _ = await _start(built, upstream)
    try:
        state = await _healthy(built, container)
        assert state["Running"], (await _run(built, "logs", container)).stderr
        ids = await _run(built, "exec", container, "python", "-c",
                         "import os; print(os.getuid(), os.getgid())")  # fmt: skip
        assert ids.stdout.split() == [str(image_user())] * 2 == ["10001", "10001"]
        write = await _run(built, "exec", container, "python", "-c",
                           "open('/etc/gate/written', 'w')")  # fmt: skip
        assert write.returncode != 0 and "Read-only file system" in write.stderr
        upstream.sandbox.knobs.delay_s = 3.0
        async with aiohttp.ClientSession() as session:

            async def slow_call() -> tuple[int, bytes]:
                async with session.get(
                    f"http://127.0.0.1:{proxy}/v1/customers/slow/profiles"
                ) as response:
                    return response.status, await response.read()

            call = asyncio.ensure_future(slow_call())
            async with asyncio.timeout(30):
                while not upstream.sandbox.received:  # noqa: ASYNC110 - a list has no event
                    await asyncio.sleep(0.02)
            assert (await _run(built, "kill", "--signal", "TERM", container)).returncode == 0
            status, body = await call
        assert status == 200 and b'"/v1/customers/slow/profiles"' in body
        waited = await asyncio.to_thread(built.docker, "wait", container, timeout=60)
        assert waited.stdout.strip() == "0", (await _run(built, "logs", container)).stdout
        logs = (await _run(built, "logs", container)).stdout
        assert '"draining"' in logs and '"stopped"' in logs
    finally:
        await _run(built, "rm", "-f", container)


async def test_two_workers_serve_in_the_image(built: Built, upstream: Upstream) -> None:
    """§5 server.workers = 2 in the image: two workers listen, one /metrics, healthy, exit 0."""
    container, proxy, admin = await _start(built, upstream, "GATE_SERVER__WORKERS=2")
    try:
        state = await _healthy(built, container)
        assert state["Running"], (await _run(built, "logs", container)).stdout
        logs = (await _run(built, "logs", container)).stdout.splitlines()
        listening = {json.loads(line)["pid"] for line in logs if '"listening"' in line}
        assert len(listening) == 2, logs
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                async with session.get(f"http://127.0.0.1:{proxy}/v1/customers") as response:
                    assert response.status == 200
            async with session.get(f"http://127.0.0.1:{admin}/metrics") as response:
                text = await response.text()
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        assert "gate_worker_restarts_total" in names
        assert len(upstream.sandbox.received) == 4
        assert (await _run(built, "stop", "--time", "30", container)).returncode == 0
        code = await _run(built, "inspect", "-f", "{{.State.ExitCode}}", container)
        assert code.stdout.strip() == "0"
    finally:
        await _run(built, "rm", "-f", container)


def test_the_base_image_is_named_as_the_dockerfile_says() -> None:
    """The engine module makes the base the Dockerfile's default PYTHON_IMAGE names."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG PYTHON_IMAGE={_BASE}\n" in text
