"""gate.tallies: the hot path's counters and histogram, exported by gate.metrics when scraped."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gate.metrics import Metrics
from gate.tallies import Durations, Tally


def test_a_tally_adds() -> None:
    tally = Tally()
    tally.inc()
    tally.inc(2.5)
    assert tally.value == 3.5


def test_durations_count_each_value_in_the_first_bucket_it_fits_le() -> None:
    durations = Durations((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 7.0):
        durations.observe(seconds)
    assert durations.counts == [2, 2, 1]  # 0.1 is "le 0.1", 1.0 is "le 1.0"
    assert durations.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert durations.sum == 8.65


def test_metrics_export_the_upstream_histogram_as_prometheus_would() -> None:
    metrics = Metrics("0")
    metrics.upstream_duration.observe(0.003)
    metrics.upstream_duration.observe(0.2)
    text = generate_latest(metrics.registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    family = families["gate_upstream_request_duration_seconds"]
    assert family.type == "histogram"
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("gate_upstream_request_duration_seconds_bucket", "0.005")] == 1
    assert samples[("gate_upstream_request_duration_seconds_bucket", "0.25")] == 2
    assert samples[("gate_upstream_request_duration_seconds_bucket", "+Inf")] == 2
    assert samples[("gate_upstream_request_duration_seconds_count", None)] == 2
    assert abs(samples[("gate_upstream_request_duration_seconds_sum", None)] - 0.203) < 1e-9
