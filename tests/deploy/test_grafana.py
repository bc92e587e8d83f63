"""deploy/grafana/gate.json: a well-formed dashboard whose every query is PromQL promtool parses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import DASHBOARD, run, tool

# What Grafana substitutes before a query reaches Prometheus, with a value of the same kind.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def variable_queries() -> list[str]:
    """The label_values(...) queries of the template variables."""
    return [v["definition"] for v in _dashboard()["templating"]["list"] if v["type"] == "query"]


def test_dashboard_is_well_formed() -> None:
    """Unique uid and panel ids, panels inside the 24-column grid, each panel with a query."""
    dashboard = _dashboard()
    assert dashboard["uid"] == "gate" and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in _panels():
        assert panel["targets"] and panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_queries_use_only_defined_variables() -> None:
    """Every $variable in a query is a template variable of the dashboard or one of Grafana's."""
    defined = {f"${v['name']}" for v in _dashboard()["templating"]["list"]}
    for query in queries() + variable_queries():
        used = set(re.findall(r"\$\w+", query))
        assert used <= defined | _GRAFANA_VARIABLES.keys(), query


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, is valid PromQL to promtool."""
    promtool = tool("promtool")
    rules = []
    for index, query in enumerate(queries()):
        for variable, value in _GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        query = re.sub(r"\$\w+", ".*", query)  # $job, $instance: regex matchers (=~)
        rules.append({"record": f"dashboard_query_{index}", "expr": query})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_shows_what_operators_watch() -> None:
    """Panels: decisions, cache hit ratio, lookup/upstream latency, errors, in flight, reloads."""
    titles = " | ".join(panel["title"].lower() for panel in _panels())
    for topic in ("decision", "hit ratio", "lookup latency", "upstream latency", "upstream errors",
                  "in flight", "reloads"):  # fmt: skip
        assert topic in titles, topic
