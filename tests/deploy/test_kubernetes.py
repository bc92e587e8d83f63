"""deploy/kubernetes: built by kustomize, valid against the Kubernetes schemas, true to the gate.

Every check runs on what `kubectl kustomize` builds (the base and each overlay),
not on the source files, so patches and generators are covered too.
"""

from __future__ import annotations

import ast
import ipaddress
import re
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
from yarl import URL

from gate import __version__
from gate.config import Settings, parse_listen
from tests.contract.conftest import ServeGate
from tests.deploy.conftest import (
    KUSTOMIZATIONS,
    PLANNED_SETTINGS,
    image_user,
    is_setting,
    kustomize,
    one,
    settings_from_toml,
)

# Kinds of the Prometheus Operator, whose schemas kubernetes-validate does not ship; they are
# checked here against the objects they point at instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# The oldest Kubernetes minor still in wide support, and the newest the validator knows.
VERSIONS = ("1.29.0", "1.37.0")
BUILDS = pytest.mark.parametrize("build", sorted(KUSTOMIZATIONS))


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment", "gate")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    return containers["gate"]


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment", "gate")["spec"]["template"]["spec"]
    return spec


def _settings(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The ConfigMap's TOML, loaded with gate.config.load as the pod loads it."""
    volume = next(v for v in _pod(objects)["volumes"] if v["name"] == "config")
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    env = {e["name"]: "set-by-the-secret" for e in _container(objects)["env"]}
    return settings_from_toml(config_map["data"]["gate.toml"], tmp_path, monkeypatch, env)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@BUILDS
def test_kustomize_builds_every_object(build: str) -> None:
    """`kubectl kustomize` builds the base and the overlay with the objects a platform needs."""
    kinds = {obj["kind"] for obj in kustomize(build)}
    assert kinds == {
        "ServiceAccount", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "NetworkPolicy", *CRD_KINDS,
    }  # fmt: skip


@BUILDS
@pytest.mark.parametrize("version", VERSIONS)
def test_objects_are_valid_against_the_kubernetes_schemas(build: str, version: str) -> None:
    """kubernetes-validate --strict (unknown fields rejected) accepts every built-in object."""
    without_schema = set()
    for obj in kustomize(build):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            without_schema.add(obj["kind"])
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {path}: {error.message}")
    assert without_schema == CRD_KINDS


def test_validator_rejects_a_misspelt_field() -> None:
    """The same strict validation fails on a field Kubernetes does not have (so a pass counts)."""
    deployment = one(kustomize("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@BUILDS
def test_container_ports_are_the_listeners_of_the_config_map(
    build: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """containerPorts are the ConfigMap's server.listen and admin.listen, neither on loopback."""
    objects = kustomize(build)
    settings = _settings(objects, tmp_path, monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    proxy_host, proxy_port = parse_listen(settings.server.listen)
    admin_host, admin_port = parse_listen(settings.admin.listen)
    assert ports == {"proxy": proxy_port, "admin": admin_port}
    for host in (proxy_host, admin_host):  # probes and Services reach the pod's address
        assert ipaddress.ip_address(host).is_unspecified, f"{host} is unreachable from outside"


@BUILDS
def test_probes_reach_the_admin_listener(build: str) -> None:
    """Readiness asks /readyz, liveness and startup /healthz, on the admin port by name."""
    container = _container(kustomize(build))
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("readiness", "liveness",
                                                                        "startup")}  # fmt: skip
    assert probes["readiness"]["path"] == "/readyz"
    assert probes["liveness"]["path"] == probes["startup"]["path"] == "/healthz"
    assert {probe["port"] for probe in probes.values()} == {"admin"}


@BUILDS
def test_config_is_mounted_where_the_command_reads_it(build: str) -> None:
    """--config names the ConfigMap's gate.toml as mounted, read-only."""
    objects = kustomize(build)
    container = _container(objects)
    args = container["args"]
    path = args[args.index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in _pod(objects)["volumes"] if v["name"] == "config")
    items = {item["path"]: item["key"] for item in volume["configMap"]["items"]}
    assert mount["readOnly"] is True
    assert path.startswith(mount["mountPath"] + "/")
    assert items[path.removeprefix(mount["mountPath"] + "/")] == "gate.toml"


@BUILDS
def test_environment_names_are_settings_of_the_gate(build: str) -> None:
    """Each GATE_* variable is a GATE_<SECTION>__<KEY> of gate.config.Settings; token: a Secret."""
    env = {e["name"]: e for e in _container(kustomize(build))["env"]}
    unknown = {name for name in env if not is_setting(name)}
    assert unknown <= PLANNED_SETTINGS.keys()
    token = env["GATE_ADMIN__TOKEN"]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"] == {"name": "gate-admin", "key": "token"}


@BUILDS
def test_pod_runs_locked_down(build: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Non-root (the image's uid), read-only root, no privilege escalation, no capabilities."""
    objects = kustomize(build)
    pod, container = _pod(objects), _container(objects)
    security = {**pod["securityContext"], **container["securityContext"]}
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == image_user()
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # With a read-only root, whatever the config writes must go to a writable volume.
    snapshot = _settings(objects, tmp_path, monkeypatch).acceptance.snapshot_path
    if snapshot:
        writable = [
            m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly", False)
        ]
        assert any(snapshot.startswith(path + "/") for path in writable), snapshot


@BUILDS
def test_shutdown_fits_in_the_grace_period(
    build: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """preStop pause + server.shutdown_grace_s < terminationGracePeriodSeconds."""
    objects = kustomize(build)
    grace = _settings(objects, tmp_path, monkeypatch).server.shutdown_grace_s
    command = _container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"], "the image's own Python: no shell binary assumed"
    ast.parse(command[2])
    sleep = re.fullmatch(r"import time; time\.sleep\((\d+(?:\.\d+)?)\)", command[2])
    assert sleep is not None, command[2]
    pause = float(sleep[1])
    assert pause >= 1, "the pause lets endpoints drop the pod before SIGTERM"
    assert pause + grace < _pod(objects)["terminationGracePeriodSeconds"]


@BUILDS
def test_services_autoscaler_budget_and_policy_select_the_pods(build: str) -> None:
    """Service, HPA, PDB and NetworkPolicy point at the Deployment's pods and named ports."""
    objects = kustomize(build)
    deployment = one(objects, "Deployment", "gate")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in _container(objects)["ports"]}
    assert _matches(deployment["spec"]["selector"]["matchLabels"], labels)
    for service in (o for o in objects if o["kind"] == "Service"):
        assert _matches(service["spec"]["selector"], labels)
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    assert one(objects, "Service", "gate")["spec"]["ports"][0]["targetPort"] == "proxy"
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gate"}
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert _container(objects)["resources"]["requests"]["cpu"], "HPA utilisation needs a request"
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert _matches(pdb["selector"]["matchLabels"], labels)
    policy = one(objects, "NetworkPolicy")["spec"]
    assert _matches(policy["podSelector"]["matchLabels"], labels)
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == port_names


@BUILDS
def test_network_policy_lets_the_gate_reach_its_upstream(
    build: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Egress allows DNS and the port of upstream.url."""
    objects = kustomize(build)
    upstream = URL(_settings(objects, tmp_path, monkeypatch).upstream.url)
    egress = one(objects, "NetworkPolicy")["spec"]["egress"]
    ports = {(p["port"], p["protocol"]) for rule in egress for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (upstream.port, "TCP")} <= ports


@BUILDS
def test_service_monitor_scrapes_the_admin_service_as_job_gate(build: str) -> None:
    """The ServiceMonitor selects gate-admin, scrapes its admin port, and labels the job "gate"."""
    objects = kustomize(build)
    monitor = one(objects, "ServiceMonitor")["spec"]
    services = [
        s for s in objects
        if s["kind"] == "Service" and _matches(monitor["selector"]["matchLabels"],
                                               s["metadata"].get("labels", {}))
    ]  # fmt: skip
    assert [s["metadata"]["name"] for s in services] == ["gate-admin"]
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert services[0]["metadata"]["labels"][monitor["jobLabel"]] == "gate"  # the rules' job


def test_image_tag_is_the_package_version() -> None:
    """The base deploys the image of this release (gate.__version__)."""
    image = _container(kustomize("base"))["image"]
    assert image == f"gate:{__version__}"


def test_production_overlay_changes_policy_not_plumbing() -> None:
    """The example overlay enforces, has its own namespace and image, keeps ports and probes."""
    base, production = kustomize("base"), kustomize("production")
    assert {o["metadata"].get("namespace") for o in production} == {"gate"}
    assert _container(production)["image"].endswith(f":{__version__}")
    for key in ("ports", "readinessProbe", "livenessProbe", "env", "securityContext"):
        assert _container(production)[key] == _container(base)[key]


async def test_probe_and_scrape_paths_answer_without_the_admin_token(
    serve_gate: ServeGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a gate with GATE_ADMIN__TOKEN set, as the pod has it: probe and scrape paths answer 200
    with no token, while /admin/* refuses a call without it."""
    objects = kustomize("base")
    container = _container(objects)
    paths = {container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("readiness", "liveness",
                                                                        "startup")}  # fmt: skip
    paths |= {e["path"] for e in one(objects, "ServiceMonitor")["spec"]["endpoints"]}
    token = "test-admin-token"  # a throwaway for this test's own gate
    monkeypatch.setenv("GATE_ADMIN__TOKEN", token)
    served = await serve_gate()
    async with aiohttp.ClientSession(served.admin_url) as session:
        for path in sorted(paths):
            async with session.get(path) as response:
                assert response.status == 200, path
        probe = "/admin/acceptance/partner/customer"
        async with session.get(probe) as response:
            assert response.status == 401
        async with session.get(probe, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 404  # authorised; nothing cached


def test_tls_component_mounts_a_tls_secret_where_the_settings_point() -> None:
    """components/tls: a kubernetes.io/tls Secret's tls.crt and tls.key, mounted read-only as a
    directory (no subPath, so the kubelet can replace them for a reload), are the files that
    GATE_SERVER__TLS_CERT_FILE and GATE_SERVER__TLS_KEY_FILE name; the base has no TLS."""
    base, objects = kustomize("base"), kustomize("tls")
    assert not [e for e in _container(base)["env"] if "TLS" in e["name"]]
    container = _container(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    files = {
        name: env[name] for name in ("GATE_SERVER__TLS_CERT_FILE", "GATE_SERVER__TLS_KEY_FILE")
    }
    assert all(is_setting(name) for name in files)
    volume = next(v for v in _pod(objects)["volumes"] if v["name"] == "tls")
    items = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    assert set(items.values()) == {"tls.crt", "tls.key"}  # the keys of type kubernetes.io/tls
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
    assert mount["readOnly"] is True and "subPath" not in mount
    for name, path in files.items():
        directory, _, file = path.rpartition("/")
        assert directory == mount["mountPath"], name
        assert items[file] == ("tls.crt" if name.endswith("CERT_FILE") else "tls.key")
    others = [m["mountPath"] for m in container["volumeMounts"] if m["name"] != "tls"]
    assert not [p for p in others if mount["mountPath"].startswith(p + "/")], "nested mount"
    # The gate's group (fsGroup) reads the key; nobody else does.
    assert volume["secret"]["defaultMode"] & 0o007 == 0
    security = _pod(objects)["securityContext"]
    assert security["fsGroup"] == security["runAsGroup"]
