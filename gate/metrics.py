"""Metrics of DESIGN §5 on a registry of the app's own, so each app (and test) is isolated.

Label values come from closed enums and the children for every known
combination are resolved once here, so the hot path never calls
``.labels()``. The two counters bumped on every gated call (decisions and
lookups) are plain numbers (``Tally``) that a collector turns into the same
counter families when ``/metrics`` is scraped: an add instead of
prometheus-client's locked ``inc`` (~60 ns against ~350, ``bench/log_bench.py``).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gate import build
from gate.core.policy import Verdict
from gate.tallies import Durations, Tally

__all__ = [
    "SHARED_OPERATIONS",
    "TRANSACTIONS",
    "UPSTREAM_ERROR_REASONS",
    "Metrics",
    "merge",
    "tls_expiry",
    "worker_restarts",
]

TRANSACTIONS = ("new_purchase", "seat_change", "term_change", "confirmation")
LOOKUP_RESULTS = ("hit", "shared", "miss", "error")  # own cache, shared tier, upstream, failed
SHARED_OPERATIONS = ("get", "lock", "set", "publish", "subscribe")
UPSTREAM_ERROR_REASONS = ("unavailable", "timeout", "aborted")
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


# Merged by their smallest value: the first certificate to lapse; the tier up only if every
# worker uses it.
_EARLIEST = frozenset({"gate_tls_certificate_expiry_timestamp_seconds", "gate_shared_cache_up"})
"""Merged across processes by their minimum: the certificate that lapses first is the one to
alert on (a worker that missed a reload still serves the old one)."""


def tls_expiry(registry: CollectorRegistry) -> Gauge:
    """notAfter of each TLS listener's certificate (the parent of workers has the admin one)."""
    return Gauge(
        "gate_tls_certificate_expiry_timestamp_seconds",
        "notAfter of the certificate a TLS listener serves (new connections), Unix time.",
        ["listener"], registry=registry,
    )  # fmt: skip


def worker_restarts(registry: CollectorRegistry) -> Counter:
    """Workers the parent started again; every process exports it, so the series always exists.

    A single gate process (and each worker) keeps it at 0; the supervising parent counts on
    its own, and the merged ``/metrics`` sum is the parent's count.
    """
    return Counter(
        "gate_worker_restarts_total",
        "Workers the parent started again after they died (0 without workers).",
        registry=registry,
    )


class _Tallies(Collector):
    """A counter family whose children are ``Tally`` values, rendered as ``Counter`` renders."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self._name, self._documentation, self._labels = name, documentation, list(labels)
        self._created = time.time()
        self.children: dict[tuple[str, ...], Tally] = {}

    def child(self, *values: str) -> Tally:
        return self.children.setdefault(values, Tally())

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._empty()  # the name, so the registry refuses a duplicate

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._empty()
        for values, tally in self.children.items():
            family.add_metric(values, tally.value, created=self._created)
        yield family

    def _empty(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labels)


class _DurationsCollector(Collector):
    """A histogram family whose one child is a ``Durations``, rendered as ``Histogram`` renders."""

    def __init__(self, name: str, documentation: str, durations: Durations) -> None:
        self._name, self._documentation, self._durations = name, documentation, durations

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        durations = self._durations
        family = HistogramMetricFamily(self._name, self._documentation)
        family.add_metric([], durations.cumulative(), durations.sum)
        yield family


class Metrics:
    """Every metric the gate exports, bound to one registry."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry()
        self._decisions_and_lookups()
        self._upstream()
        self._shared()
        self.cache_entries = Gauge(
            "gate_acceptance_cache_entries",
            "Pairs held in the process's own acceptance cache (with workers: summed over them, "
            "so a pair cached by two workers counts twice).",
            registry=self.registry,
        )
        self.in_flight = 0  # a plain int on the hot path; the gauge reads it at scrape time
        Gauge(
            "gate_requests_in_flight", "Proxy requests being handled.", registry=self.registry
        ).set_function(lambda: float(self.in_flight))
        reloads = Counter(
            "gate_config_reloads_total", "Config reloads by result.", ["result"],
            registry=self.registry,
        )  # fmt: skip
        self.reloads = {result: reloads.labels(result) for result in ("ok", "error")}
        self.tls_expiry = tls_expiry(self.registry)
        worker_restarts(self.registry)  # 0 here: only a supervising parent restarts workers
        info = Gauge(
            "gate_build_info",
            "Always 1; labels carry the gate and Python versions and the build (mypyc or pure).",
            ["version", "python", "build"], registry=self.registry,
        )  # fmt: skip
        info.labels(version, platform.python_version(), build()).set(1)

    def _decisions_and_lookups(self) -> None:
        decisions = _Tallies(
            "gate_decisions_total",
            "Gated calls by transaction kind and X-Gate-Decision verdict.",
            ["transaction", "decision"],
        )
        self.decisions = {
            (kind, verdict.value): decisions.child(kind, verdict.value)
            for kind in TRANSACTIONS
            for verdict in Verdict
        }
        self.registry.register(decisions)
        lookups = _Tallies(
            "gate_acceptance_lookups_total",
            "Acceptance checks by how they were answered: own cache, shared tier, upstream, error.",
            ["result"],
        )
        self.lookups = {result: lookups.child(result) for result in LOOKUP_RESULTS}
        self.registry.register(lookups)
        self.stale = Counter(
            "gate_acceptance_stale_total",
            "Acceptance checks answered 'accepted' from a confirmed pair past positive_ttl_s "
            "because its lookup failed (stale-if-error); also counted as lookup errors.",
            registry=self.registry,
        )
        self.throttled = Counter(
            "gate_acceptance_throttled_total",
            "Acceptance checks the upstream's throttling answered: a lookup answered 429, or "
            "one not made while the partner's Retry-After runs; also counted as lookup errors.",
            registry=self.registry,
        )
        self.lookup_duration = Histogram(
            "gate_acceptance_lookup_duration_seconds",
            "Time of one acceptance lookup against the upstream.",
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )

    def _upstream(self) -> None:
        self.upstream_duration = Durations(_UPSTREAM_BUCKETS)
        self.registry.register(
            _DurationsCollector(
                "gate_upstream_request_duration_seconds",
                "Time from sending a forwarded call until the upstream's response headers.",
                self.upstream_duration,
            )
        )
        errors = Counter(
            "gate_upstream_errors_total",
            "Forwarded calls the upstream failed: unreachable, timed out, or aborted mid-body.",
            ["reason"],
            registry=self.registry,
        )
        self.upstream_errors = {reason: errors.labels(reason) for reason in UPSTREAM_ERROR_REASONS}

    def _shared(self) -> None:
        errors = Counter(
            "gate_shared_cache_errors_total",
            "Shared-tier (Redis) commands that failed or timed out, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.shared_errors = {op: errors.labels(op) for op in SHARED_OPERATIONS}
        self.shared_up = Gauge(
            "gate_shared_cache_up",
            "1 while the shared tier (Redis) is in use, 0 while it is skipped or not configured "
            "(with workers: the lowest, so 0 while any worker skips it).",
            registry=self.registry,
        )

    def watch_cache(self, size: Callable[[], int]) -> None:
        """Read the cache size at scrape time instead of on every change."""
        self.cache_entries.set_function(lambda: float(size()))


def merge(texts: list[str]) -> str:
    """Several processes' /metrics text as one gate's: samples summed across processes.

    Right for counters, histograms and the gauges the gate exports (requests in
    flight, cached pairs); ``gate_build_info`` stays 1, and the optional
    ``_created`` stamps are left out, with the ``X_created`` families the text
    format puts them in (else each would stay behind empty: a HELP, no series).
    """
    kinds: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.samples and all(s.name.endswith("_created") for s in family.samples):
                continue  # a family of creation stamps only
            kinds.setdefault(family.name, (family.type, family.documentation))
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in samples:
                    samples[key] = sample.value
                elif family.name == "gate_build_info":
                    samples[key] = max(samples[key], sample.value)
                elif family.name in _EARLIEST:
                    samples[key] = min(samples[key], sample.value)
                else:
                    samples[key] += sample.value
    lines: list[str] = []
    for family_name, (kind, documentation) in kinds.items():
        name = f"{family_name}_total" if kind == "counter" else family_name  # as generated
        lines.append(f"# HELP {name} {_escape(documentation, help_text=True)}")
        lines.append(f"# TYPE {name} {kind}")
        for (sample_name, labels), value in values[family_name].items():
            rendered = ",".join(f'{key}="{_escape(text)}"' for key, text in labels)
            head = f"{sample_name}{{{rendered}}}" if labels else sample_name
            lines.append(f"{head} {value!r}")
    return "\n".join(lines) + "\n"


def _escape(text: str, *, help_text: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text if help_text else text.replace('"', '\\"')
