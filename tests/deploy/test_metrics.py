"""The rules and the dashboard read metrics a running gate really exports (DESIGN §5).

Names are taken from a real `gate serve` process's /metrics, not from a list,
so a renamed metric breaks this test, not a dashboard in production.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.certs import Authority, Pair
from tests.contract.conftest import ServeGate
from tests.deploy.conftest import PROMETHEUS_RULE, RULES
from tests.deploy.test_grafana import queries, variable_queries

# Metrics DESIGN plans and deploy/ already uses, that the gate does not export yet. This must
# be exactly what is missing: when one lands, drop it here (the test says so).
PLANNED_METRICS: dict[str, str] = {}  # none left: worker restarts and the shared tier landed
_NAME = re.compile(r"(?<![\w:])gate_[a-z_]+(?![\w:])")


def names_in(expression: str) -> set[str]:
    """gate_* metric names a PromQL expression reads (histogram series by family name)."""
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in _NAME.findall(expression)}


def _rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    operator = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))["spec"]["groups"]
    return [rule["expr"] for group in rules + operator for rule in group["rules"]]


async def _exported(serve_gate: ServeGate, tls: Pair) -> set[str]:
    """What a gate with workers exports (the parent adds gate_worker_restarts_total), its proxy
    on TLS (a TLS listener exports its certificate's expiry)."""
    served = await serve_gate(server="workers = 2\n" + tls.toml())
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{served.admin_url}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    names = set()
    for family in text_string_to_metric_families(text):
        if family.type == "histogram":
            names.add(family.name)
        else:
            names |= {s.name for s in family.samples if not s.name.endswith("_created")}
    return names


def test_name_extraction_reads_metrics_not_recorded_series() -> None:
    """The extractor finds raw names, strips histogram suffixes and skips level:metric:op names."""
    expression = (
        "sum(rate(gate_decisions_total{x='y'}[5m])) / job:gate_decisions:rate5m"
        " + histogram_quantile(0.9, rate(gate_upstream_request_duration_seconds_bucket[5m]))"
    )
    assert names_in(expression) == {
        "gate_decisions_total", "gate_upstream_request_duration_seconds",
    }  # fmt: skip


async def test_rules_and_dashboard_use_exported_metrics_or_planned_ones(
    serve_gate: ServeGate, tmp_path: Path
) -> None:
    """Every gate_* name in the rules and the dashboard is exported, or listed as planned."""
    exported = await _exported(serve_gate, Authority(tmp_path).issue())
    assert "gate_decisions_total" in exported and "gate_build_info" in exported
    used = set()
    for expression in _rule_expressions() + queries() + variable_queries():
        used |= names_in(expression)
    missing = used - exported
    assert missing <= PLANNED_METRICS.keys(), f"not exported by the gate: {missing}"
    landed = PLANNED_METRICS.keys() - missing
    assert not landed, f"now exported: drop {landed} from PLANNED_METRICS"
    assert PLANNED_METRICS.keys() <= used


async def test_dashboard_shows_every_exported_metric(serve_gate: ServeGate, tmp_path: Path) -> None:
    """A metric the gate exports has a panel: a new metric needs a place on the dashboard."""
    exported = await _exported(serve_gate, Authority(tmp_path).issue())
    shown = set()
    for expression in queries():
        shown |= names_in(expression)
    assert exported - shown == set()
