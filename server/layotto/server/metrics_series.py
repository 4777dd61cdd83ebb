"""Counters and latency histograms kept as plain numbers on the event loop, exposed through prometheus-client.

prometheus-client's ``Counter.inc`` and ``Histogram.observe`` take a lock per value they touch and
search the buckets linearly: about 3 µs for a count and a latency, on every call. A runtime's
calls are all counted on its event loop thread, so :class:`SeriesFamily` keeps each series as
three plain numbers (count, sum, per-bucket counts found with :func:`bisect.bisect_left`) and
builds prometheus-client's metric families only when ``/metrics`` is scraped (on the loop too).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class Series:
    """One label set's count, latency sum (ms) and bucket counts (not cumulative; the last is +Inf)."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self, size: int) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * size


class SeriesFamily(Collector):
    """A counter (``count_name``, written with ``_total``) and a histogram (``latency_name``, in
    milliseconds, ``bounds`` its bucket bounds) over the same labels, registered in ``registry``.

    Not thread-safe: record from one thread (the event loop), and scrape from it.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        count_name: str,
        latency_name: str,
        labels: Sequence[str],
        bounds: Sequence[float],
        *,
        count_help: str,
        latency_help: str,
    ) -> None:
        self._names = (count_name, latency_name)
        self._helps = (count_help, latency_help)
        self._labels = list(labels)
        self.bounds = tuple(float(bound) for bound in bounds)  #: the buckets' upper bounds (ms), +Inf not listed
        self._le = [repr(bound) for bound in self.bounds] + ["+Inf"]  # prometheus-client writes 1.0, 5000.0
        self._series: dict[tuple[str, ...], Series] = {}
        registry.register(self)

    def series(self, labels: tuple[str, ...]) -> Series:
        """The series of ``labels`` (values in the order of the family's labels), made on first use."""
        found = self._series.get(labels)
        if found is None:
            found = self._series[labels] = Series(len(self.bounds) + 1)
        return found

    def record(self, labels: tuple[str, ...], elapsed_ms: float) -> None:
        """Count one event of ``labels`` that took ``elapsed_ms``."""
        series = self._series.get(labels) or self.series(labels)
        series.count += 1
        series.total += elapsed_ms
        series.buckets[bisect_left(self.bounds, elapsed_ms)] += 1

    def observe(self, series: Series, elapsed_ms: float) -> None:
        """Count one event of a series already looked up (the hot path keeps its series)."""
        series.count += 1
        series.total += elapsed_ms
        series.buckets[bisect_left(self.bounds, elapsed_ms)] += 1

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(self._names[0], self._helps[0], labels=self._labels)
        histogram = HistogramMetricFamily(self._names[1], self._helps[1], labels=self._labels)
        for labels, series in list(self._series.items()):
            if not series.count:  # made ahead of its first event: shown once something is counted
                continue
            counter.add_metric(list(labels), series.count)
            cumulative, buckets = 0, []
            for le, count in zip(self._le, series.buckets, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            histogram.add_metric(list(labels), buckets, series.total)
        yield counter
        yield histogram
