"""What functions share across instances: proxy-wasm shared queues and metrics (thread-safe).

Both are bounded. A queue holds at most ``capacity`` items (enqueueing into a full one fails) and a
function registers at most :data:`QUEUES_PER_FUNCTION` queues; a function defines at most
``per_function`` metrics, so a module cannot create unbounded Prometheus series. Metrics are
exported (when the runtime has a registry) as three families labelled ``function`` and ``name``:
``layotto_wasm_function_counter_total``, ``layotto_wasm_function_gauge`` and
``layotto_wasm_function_histogram``.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

QUEUES_PER_FUNCTION = 16
MAX_NAME_BYTES = 256
#: the histogram buckets' upper bounds (the values are the module's own units)
HISTOGRAM_BUCKETS = (1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 1_000_000)
COUNTER, GAUGE, HISTOGRAM = 0, 1, 2


class SharedLimit(Exception):
    """A queue is full, or a function has registered all the queues or metrics it may."""


@dataclass
class _Queue:
    owner: str  # the function (install name) that registered it: its root context hears on_queue_ready
    items: collections.deque[bytes] = field(default_factory=collections.deque)


class SharedQueues:
    """Queues by (function, name), each with a token; ``capacity`` items each at most."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._by_name: dict[tuple[str, str], int] = {}
        self._queues: dict[int, _Queue] = {}

    def register(self, function: str, name: str) -> int:
        """The token of ``function``'s queue ``name``, created if new; SharedLimit past
        QUEUES_PER_FUNCTION queues."""
        with self._lock:
            token = self._by_name.get((function, name))
            if token is not None:
                return token
            if sum(1 for owner, _ in self._by_name if owner == function) >= QUEUES_PER_FUNCTION:
                raise SharedLimit(f"function {function!r} has {QUEUES_PER_FUNCTION} queues already")
            token = next(self._tokens)
            self._by_name[(function, name)] = token
            self._queues[token] = _Queue(function)
            return token

    def resolve(self, function: str, name: str) -> int | None:
        """The token of ``function``'s queue ``name``, None when it registered none."""
        with self._lock:
            return self._by_name.get((function, name))

    def enqueue(self, token: int, item: bytes) -> str | None:
        """Append ``item``; the owner function's name (to notify), None for an unknown token.
        SharedLimit when the queue holds ``capacity`` items."""
        with self._lock:
            queue = self._queues.get(token)
            if queue is None:
                return None
            if len(queue.items) >= self.capacity:
                raise SharedLimit(f"queue {token} is full ({self.capacity} items)")
            queue.items.append(item)
            return queue.owner

    def dequeue(self, token: int) -> bytes | None:
        """The oldest item; None when empty. KeyError for an unknown token."""
        with self._lock:
            items = self._queues[token].items
            return items.popleft() if items else None

    def drop(self, function: str) -> None:
        """Forget ``function``'s queues (it was uninstalled)."""
        with self._lock:
            for key in [key for key in self._by_name if key[0] == function]:
                self._queues.pop(self._by_name.pop(key), None)


@dataclass
class _Metric:
    function: str
    name: str
    kind: int
    value: int = 0  # counter or gauge; the histogram's sum
    buckets: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BUCKETS) + 1))


class FunctionMetrics:
    """Metrics functions define, by id; at most ``per_function`` for each function."""

    def __init__(self, per_function: int) -> None:
        self.per_function = per_function
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._metrics: dict[int, _Metric] = {}

    def define(self, function: str, kind: int, name: str) -> int:
        """The id of ``function``'s metric ``name`` (the same id when defined again). ValueError for
        an unknown kind or a name of a kind already defined otherwise; SharedLimit past the cap."""
        if kind not in (COUNTER, GAUGE, HISTOGRAM):
            raise ValueError(f"metric type {kind} is not 0 (counter), 1 (gauge) or 2 (histogram)")
        with self._lock:
            found = [(i, m) for i, m in self._metrics.items() if m.function == function]
            for metric_id, metric in found:
                if metric.name == name:
                    if metric.kind != kind:
                        raise ValueError(f"metric {name!r} is defined with type {metric.kind}")
                    return metric_id
            if len(found) >= self.per_function:
                raise SharedLimit(f"function {function!r} has defined {self.per_function} metrics already")
            metric_id = next(self._ids)
            self._metrics[metric_id] = _Metric(function, name, kind)
            return metric_id

    def increment(self, metric_id: int, offset: int) -> None:
        """Add ``offset`` to a counter (not negative) or gauge; KeyError, ValueError."""
        with self._lock:
            metric = self._metrics[metric_id]
            if metric.kind == HISTOGRAM or (metric.kind == COUNTER and offset < 0):
                raise ValueError("a histogram records values; a counter only grows")
            metric.value += offset

    def record(self, metric_id: int, value: int) -> None:
        """Set a gauge, observe into a histogram, add to a counter; KeyError."""
        with self._lock:
            metric = self._metrics[metric_id]
            if metric.kind == GAUGE:
                metric.value = value
            elif metric.kind == COUNTER:
                metric.value += value
            else:
                metric.value += value
                metric.buckets[bisect.bisect_left(HISTOGRAM_BUCKETS, value)] += 1

    def get(self, metric_id: int) -> int:
        """A counter's or gauge's value, a histogram's sum; KeyError."""
        with self._lock:
            return self._metrics[metric_id].value

    def drop(self, function: str) -> None:
        """Forget ``function``'s metrics (it was uninstalled): their series leave /metrics."""
        with self._lock:
            for metric_id in [i for i, m in self._metrics.items() if m.function == function]:
                del self._metrics[metric_id]

    def collect(self) -> Iterator[Any]:
        """The Prometheus metric families (prometheus_client's Collector protocol)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        labels = ["function", "name"]
        counters = CounterMetricFamily("layotto_wasm_function_counter", "Counters functions define.", labels=labels)
        gauges = GaugeMetricFamily("layotto_wasm_function_gauge", "Gauges functions define.", labels=labels)
        histograms = HistogramMetricFamily(
            "layotto_wasm_function_histogram", "Histograms functions define.", labels=labels
        )
        with self._lock:
            metrics = [(m.function, m.name, m.kind, m.value, list(m.buckets)) for m in self._metrics.values()]
        for function, name, kind, value, buckets in metrics:
            if kind == COUNTER:
                counters.add_metric([function, name], value)
            elif kind == GAUGE:
                gauges.add_metric([function, name], value)
            else:
                bounds = [*map(floatToGoString, HISTOGRAM_BUCKETS), "+Inf"]
                cumulative = list(itertools.accumulate(buckets))
                histograms.add_metric([function, name], list(zip(bounds, cumulative, strict=True)), value)
        yield from (counters, gauges, histograms)
