"""Finished spans handed to exporters in batches, from one background thread.

Ending a span appends it to a deque (no lock, no wake-up); the thread wakes every
``delay`` seconds, or early once half a batch is waiting, and hands the spans to each
exporter. When exporters fall behind, spans beyond ``max_queue`` are dropped and counted
rather than growing memory.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from opentelemetry.context import Context

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An exporter could not deliver a batch (it is logged and dropped)."""


class Exporter(Protocol):
    def export(self, spans: Sequence[Any]) -> Any: ...

    def shutdown(self) -> None: ...


class SpanQueue:
    """What both batch processors share: a bounded queue of finished spans, taken in batches."""

    watches_starts = False  # the tracer need not call on_start

    def __init__(self, exporters: Sequence[Exporter], *, delay: float, max_batch: int, max_queue: int) -> None:
        self._exporters = list(exporters)
        self._queue: collections.deque[Any] = collections.deque()
        self._delay, self._max_batch, self._max_queue = delay, max_batch, max_queue
        self.dropped = 0

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(span)

    def _batches(self) -> Iterator[list[Any]]:
        """Batches of what is queued now; spans ending meanwhile wait for the next round, so
        batches stay large under load instead of shrinking to whatever arrived during an export."""
        waiting = len(self._queue)
        while waiting > 0:
            size = min(self._max_batch, waiting)
            waiting -= size
            yield [self._queue.popleft() for _ in range(size)]


class BatchProcessor(SpanQueue):
    """A span processor feeding exporters from a daemon thread."""

    def __init__(
        self, exporters: Sequence[Exporter], *, delay: float = 1.0, max_batch: int = 1024, max_queue: int = 16384
    ) -> None:
        super().__init__(exporters, delay=delay, max_batch=max_batch, max_queue=max_queue)
        self._wake_at = max(1, max_batch // 2)
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._flush_requests = self._flushes_done = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="layotto-tracing-export", daemon=True)
        self._thread.start()

    def on_end(self, span: Any) -> None:
        super().on_end(span)
        if len(self._queue) >= self._wake_at and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            requested = self._flush_requests  # every flush asked before this drain is served by it
            self._drain()
            with self._flushed:
                self._flushes_done = requested
                self._flushed.notify_all()
        while self._queue:  # stopping: everything left goes out
            self._drain()

    def _drain(self) -> None:
        for batch in self._batches():
            for exporter in self._exporters:
                try:
                    exporter.export(batch)
                except Exception as error:  # an exporter must never stop the others, nor this thread
                    log.warning("trace export failed: %s", error)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if not self._thread.is_alive():
            return not self._queue
        with self._flushed:
            self._flush_requests += 1
            ticket = self._flush_requests
            self._wake.set()
            return self._flushed.wait_for(lambda: self._flushes_done >= ticket, timeout_millis / 1000)

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)
        for exporter in self._exporters:
            try:
                exporter.shutdown()
            except Exception as error:
                log.warning("trace exporter shutdown failed: %s", error)
