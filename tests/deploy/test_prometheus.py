"""deploy/prometheus: promtool checks and unit-tests the rules; the Operator's copy matches them."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.conftest import PROMETHEUS_RULE, RULE_TESTS, RULES, run, tool

# What the rules promise to alert on (the README's "What to alert on" lists the same).
ALERTS = {
    "GateDown", "GateAbsent", "GateUpstreamErrors", "GateLookupErrors", "GateBlockedRatioJump",
    "GateLookupLatencyHigh", "GateUpstreamLatencyHigh", "GateConfigReloadFailed",
    "GateWorkerRestarts", "GateSharedTierErrors", "GateTlsCertificateExpiresSoon",
}  # fmt: skip
_RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    """promtool check rules: every expression parses, names and labels are valid."""
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """promtool test rules: alerts fire on data that should page and stay silent otherwise."""
    result = run(tool("promtool"), "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing() -> None:
    """Each alert appears in the unit tests with an expected firing alert, not only silences."""
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    silent = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case["exp_alerts"]
    }
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert alerts == ALERTS
    assert firing == alerts
    assert silent == alerts


def test_alerts_carry_severity_and_text() -> None:
    """Every alert has a severity a router can use, a summary and a description."""
    for rule in (r for r in _rules() if "alert" in r):
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]


def test_recorded_series_used_by_alerts_are_recorded() -> None:
    """Every level:metric:operation name in an expression is recorded in the same file."""
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    used = {name for rule in _rules() for name in _RECORDED.findall(rule["expr"])}
    assert used, "the alerts read recorded series"
    assert used <= recorded, used - recorded


def test_prometheus_operator_rule_carries_the_same_groups() -> None:
    """deploy/kubernetes/base/prometheusrule.yaml == the groups of gate.rules.yaml."""
    operator = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert operator["kind"] == "PrometheusRule"
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert operator["spec"]["groups"] == groups, (
        "copy the groups of deploy/prometheus/gate.rules.yaml into prometheusrule.yaml"
    )
