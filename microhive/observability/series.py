"""The plain counters :class:`~.metrics.Metrics` keeps per handler, call and link: integers
and bucket lists updated on the event loop, turned into Prometheus families only at scrape
time (:mod:`.metrics` says why)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

SECONDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Histogram buckets of handler durations and call latencies, in seconds."""

SIZES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
"""Histogram buckets of batch sizes."""


class Histogram:
    """Bucket counts and a sum, cumulated only when exported."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def exported(self) -> tuple[list[tuple[str, float]], float]:
        counts, total = list(self.counts), self.sum  # one snapshot: count == +Inf bucket
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return buckets, total


FINE = frozenset({"ok", "acked", "released"})
"""Outcomes that are no failure (released: given back at shutdown, unhandled)."""


class Series:
    """What one handler did, for one signal, queue or job (one set of label values): the
    :class:`~microhive.middleware.Counter` the agent calls for each run."""

    __slots__ = ("batch", "duration", "outcomes", "received")

    def __init__(self, batches: bool) -> None:
        self.received = 0
        self.outcomes: dict[str, int] = {}
        self.duration = Histogram(SECONDS)
        self.batch = Histogram(SIZES) if batches else None

    def started(self, size: int) -> None:
        self.received += size
        if self.batch is not None:
            self.batch.observe(size)

    def ended(self, outcome: str, duration: float, size: int) -> None:
        duration_of = self.duration  # Histogram.observe inlined: this runs per message
        duration_of.counts[bisect_left(SECONDS, duration)] += 1
        duration_of.sum += duration
        try:
            self.outcomes[outcome] += size
        except KeyError:
            self.outcomes[outcome] = size

    @property
    def failed(self) -> int:
        """Messages whose run failed: every outcome but the fine ones, summed when read."""
        return sum(count for outcome, count in list(self.outcomes.items()) if outcome not in FINE)


class CallSeries:
    __slots__ = ("errors", "latency")

    def __init__(self) -> None:
        self.latency = Histogram(SECONDS)
        self.errors: dict[str, int] = {}
