"""Counters and a histogram the hot path bumps with plain arithmetic; exported when scraped.

prometheus-client's ``Counter.inc`` and ``Histogram.observe`` take a lock
and run as interpreted Python (~0.35 µs and ~1 µs a call). The event loop's
thread is the only writer here, so a number and a list of bucket counts do:
``gate.metrics`` turns them into the same families at scrape time.
"""

from __future__ import annotations

__all__ = ["Durations", "Tally"]


class Tally:
    """One counter child bumped by a plain add (a scrape reads the number as it stands)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Durations:
    """A histogram without labels: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # upper bounds, ascending; a last bucket (+Inf) follows them
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration in the first bucket whose bound it does not exceed (``le``)."""
        self.sum += seconds
        bounds = self.bounds
        at = 0
        while at < len(bounds) and seconds > bounds[at]:
            at += 1
        self.counts[at] += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """The buckets as Prometheus exposes them: ``(le, count so far)``, ``+Inf`` last."""
        total = 0
        out: list[tuple[str, int]] = []
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out
