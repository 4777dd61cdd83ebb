"""The traffic capture's counters on ``/metrics`` (see :mod:`layotto.server.traffic.capture`).

Dapr has no traffic capture, so the families are the runtime's own, named as Dapr names its
counters (``<prefix>_<what>_count``, written with ``_total``) and labelled by ``app_id``:

* ``layotto_traffic_capture_eligible_count_total``: received unary calls of a captured method;
* ``layotto_traffic_capture_sampled_count_total``: of those, the records queued for the files
  (the others were sampled out, or dropped);
* ``layotto_traffic_capture_dropped_count_total`` by ``reason``: ``queue_full`` (the writer was
  behind) or ``too_large`` (a record larger than a whole file);
* ``layotto_traffic_capture_written_count_total`` and ``layotto_traffic_capture_written_bytes_total``:
  records and bytes written into the files;
* ``layotto_traffic_capture_files_count_total``: files made (the first one, then one per rotation).

The counters are the capture's own integers, read when ``/metrics`` is scraped: nothing is added to
a call's path.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from layotto.server.traffic.capture import TrafficCapture

PREFIX = "layotto_traffic_capture"


class CaptureCollector(Collector):
    """Reads one :class:`TrafficCapture`'s counters at each scrape (see the module)."""

    def __init__(self, app_id: str, capture: TrafficCapture) -> None:
        self._app_id = app_id
        self._capture = capture

    def collect(self) -> Iterator[Metric]:
        capture, app_id = self._capture, [self._app_id]
        files = capture.files
        too_large, written_bytes, opened = (
            (files.too_large, files.bytes_written, files.files_opened) if files is not None else (0, 0, 0)
        )
        yield _counter("eligible_count", "Received unary calls of a captured method.", capture.eligible, app_id)
        queued = "Records of sampled calls queued for the capture files."
        yield _counter("sampled_count", queued, capture.sampled, app_id)
        dropped = CounterMetricFamily(
            f"{PREFIX}_dropped_count",
            "Records of sampled calls not written, by reason (queue_full, too_large).",
            labels=["app_id", "reason"],
        )
        dropped.add_metric([self._app_id, "queue_full"], capture.dropped)
        dropped.add_metric([self._app_id, "too_large"], too_large + capture.too_large)
        yield dropped
        yield _counter("written_count", "Records written into the capture files.", capture.written, app_id)
        yield _counter("written_bytes", "Bytes written into the capture files.", written_bytes, app_id)
        yield _counter("files_count", "Capture files made (the first, then one per rotation).", opened, app_id)


def _counter(name: str, documentation: str, value: int, labels: list[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=["app_id"])
    family.add_metric(labels, value)
    return family
