"""DESIGN §5 metrics: the hot counters are plain numbers, exported as the counters they were.

``gate_decisions_total`` and ``gate_acceptance_lookups_total`` are bumped on
every gated call by a plain add and turned into counter families at scrape
time; a scraper, a dashboard and the multi-worker merge see the same names,
labels, types and values as prometheus-client's own ``Counter`` gives.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gate.core.policy import Verdict
from gate.metrics import LOOKUP_RESULTS, TRANSACTIONS, Metrics, merge
from tests.conftest import Gate
from tests.support import auth, confirmation, metric, order, orders_path

_HOT = {
    "gate_decisions": ("transaction", "decision"),
    "gate_acceptance_lookups": ("result",),
}


def _families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_every_label_combination_is_a_counter_at_zero_from_the_start() -> None:
    """Before any call each (transaction, decision) and each lookup result exports 0."""
    text = generate_latest(Metrics("test").registry).decode()
    families = text_string_to_metric_families(text)
    found = {f.name: f for f in families if f.name in _HOT}
    assert set(found) == set(_HOT)
    for name, family in found.items():
        assert family.type == "counter"
        totals = [s for s in family.samples if s.name == f"{name}_total"]
        assert {frozenset(s.labels) for s in totals} == {frozenset(_HOT[name])}
        assert len(totals) > 1 and all(s.value == 0 for s in totals)
    decisions = {
        (s.labels["transaction"], s.labels["decision"]) for s in found["gate_decisions"].samples
    }
    assert decisions == {(kind, verdict.value) for kind in TRANSACTIONS for verdict in Verdict}
    results = {s.labels["result"] for s in found["gate_acceptance_lookups"].samples}
    assert results == set(LOOKUP_RESULTS)


def test_the_text_is_what_a_prometheus_counter_writes() -> None:
    """Same lines as a prometheus-client Counter with the same children and counts."""
    metrics = Metrics("test")
    metrics.decisions[("seat_change", "blocked")].inc()
    metrics.decisions[("seat_change", "blocked")].inc()
    metrics.lookups["error"].inc(3)
    registry = CollectorRegistry()
    decisions = Counter(
        "gate_decisions_total",
        "Gated calls by transaction kind and X-Gate-Decision verdict.",
        ["transaction", "decision"],
        registry=registry,
    )
    for kind in TRANSACTIONS:
        for verdict in Verdict:
            decisions.labels(kind, verdict.value)
    decisions.labels("seat_change", "blocked").inc(2)
    ours = generate_latest(metrics.registry).decode()

    def decision_lines(text: str) -> list[str]:  # _created carries each one's own start time
        return [ln for ln in text.splitlines() if "gate_decisions" in ln and "_created" not in ln]

    assert decision_lines(ours) == decision_lines(generate_latest(registry).decode())
    assert metric(ours, "gate_acceptance_lookups_total", result="error") == 3


def test_a_second_family_of_the_same_name_is_refused() -> None:
    """The collector names its family to the registry, so a duplicate fails at start."""
    metrics = Metrics("test")
    with pytest.raises(ValueError, match="gate_decisions"):
        Counter("gate_decisions_total", "again", registry=metrics.registry)


def test_workers_are_summed() -> None:
    """DESIGN §5: with workers, /metrics is the sum over them (the parent merges their text)."""
    one, two = Metrics("test"), Metrics("test")
    one.decisions[("new_purchase", "allowed")].inc()
    two.decisions[("new_purchase", "allowed")].inc(2)
    two.lookups["hit"].inc()
    text = merge([generate_latest(m.registry).decode() for m in (one, two)])
    assert metric(text, "gate_decisions_total", transaction="new_purchase", decision="allowed") == 3
    assert metric(text, "gate_acceptance_lookups_total", result="hit") == 1
    assert _families(text)["gate_decisions"].type == "counter"


def test_the_merge_leaves_no_empty_family_behind() -> None:
    """DESIGN §5: merged, the families are one process's without its ``_created`` stamps, and
    none is left empty that one process fills (a scraper would see a HELP with no series)."""
    texts = [generate_latest(Metrics("test").registry).decode() for _ in range(2)]
    single, merged = _families(texts[0]), _families(merge(texts))
    stamps = {name for name, family in single.items() if _only_created(family)}
    assert stamps  # prometheus-client writes them: the check would pass vacuously otherwise
    assert set(merged) == set(single) - stamps
    empty = {name for name, family in merged.items() if not family.samples}
    assert empty <= {name for name, family in single.items() if not family.samples}


def _only_created(family: Metric) -> bool:
    return bool(family.samples) and all(s.name.endswith("_created") for s in family.samples)


async def test_gated_calls_are_counted_at_scrape_time(gate: Gate) -> None:
    """R5 then a cached order: /metrics counts one confirmation, one allowed order, one hit."""
    answer = await gate.client.post(
        "/v1/customers/c0ffee00-0000-4000-8000-000000000001/agreements",
        data=json.dumps(confirmation()),
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert answer.status == 201
    customer = "c0ffee00-0000-4000-8000-000000000001"
    for _ in range(2):
        answer = await gate.client.post(
            orders_path(customer),
            data=json.dumps(order()),
            headers={**auth(), "Content-Type": "application/json"},
        )
        assert answer.status == 201 and answer.headers["X-Gate-Decision"] == "allowed"
    text = await gate.metrics()
    allowed = {"transaction": "new_purchase", "decision": "allowed"}
    assert metric(text, "gate_decisions_total", **allowed) == 2
    assert metric(text, "gate_decisions_total", transaction="confirmation", decision="allowed") == 1
    assert metric(text, "gate_acceptance_lookups_total", result="hit") == 2
    assert metric(text, "gate_acceptance_lookups_total", result="miss") == 0
