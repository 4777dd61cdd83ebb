"""Finished spans exported from the event loop that serves the requests.

A process whose requests all run on one asyncio loop (the runtime) is better served by
exporting on that loop than from a thread: a background thread that wakes, encodes and
makes a blocking gRPC call takes the GIL from the loop at arbitrary points and hands it
back only after the switch interval, several times per export. On the loop, a batch is
encoded between requests and sent with grpc.aio without blocking anything. Exporters
with an ``export_async`` coroutine are awaited; others run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from layotto.tracing._batch import Exporter, SpanQueue

log = logging.getLogger(__name__)


class LoopBatchProcessor(SpanQueue):
    """A span processor feeding exporters from a task on ``loop`` (create it on that loop)."""

    def __init__(
        self,
        exporters: Sequence[Exporter],
        loop: asyncio.AbstractEventLoop,
        *,
        delay: float = 1.0,
        max_batch: int = 1024,
        max_queue: int = 16384,
    ) -> None:
        super().__init__(exporters, delay=delay, max_batch=max_batch, max_queue=max_queue)
        self._loop = loop
        self._loop_thread = threading.get_ident()
        # one exporter that encodes spans itself (OTLP): a span is encoded as it ends, while its
        # objects are still in the CPU's caches, and the queue keeps bytes (which the garbage
        # collector does not walk) instead of span objects living until the next export
        only = self._exporters[0] if len(self._exporters) == 1 else None
        self._encode: Callable[[Any], bytes] | None = None
        if only is not None and hasattr(only, "export_encoded_async"):
            self._encode = getattr(only, "encode_span", None)
        self._stopping = asyncio.Event()
        self._sending = asyncio.Lock()  # one flush at a time: a flush returns after the batches before it
        self._pump = loop.create_task(self._run(), name="layotto-tracing-export")

    def on_end(self, span: Any) -> None:
        if self._encode is None:
            super().on_end(span)
            return
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        try:
            self._queue.append(self._encode(span))
        except Exception as error:  # a span that cannot be encoded is lost, never the request
            self.dropped += 1
            log.warning("trace span not encoded: %s", error)

    async def _run(self) -> None:
        """Export every ``delay`` seconds until stopping; an export under way when stopping is
        asked for is finished (cancelling it lost its batch: taken from the queue, never sent)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._delay)
            await self.flush_async()

    async def flush_async(self) -> None:
        """Export what is queued now, once a flush under way (the pump's) has sent what it took."""
        async with self._sending:
            await self._send_queued()

    async def _send_queued(self) -> None:
        for batch in self._batches():
            for exporter in self._exporters:
                try:
                    if self._encode is not None:
                        await exporter.export_encoded_async(batch)  # type: ignore[attr-defined]
                    else:
                        await _export(exporter, batch)
                except Exception as error:  # an exporter must never stop the others, nor the pump
                    log.warning("trace export failed: %s", error)

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """From another thread; on the loop's own thread, ``await flush_async()`` instead."""
        if self._on_loop_thread():
            raise RuntimeError("force_flush() would block the loop that exports: await flush_async()")
        if self._loop.is_closed():
            return not self._queue
        future = asyncio.run_coroutine_threadsafe(self.flush_async(), self._loop)
        try:
            future.result(timeout_millis / 1000)
        except TimeoutError:
            return False
        return True

    def shutdown(self) -> None:
        """Stop the pump, export what is left and close the exporters (from another thread)."""
        if self._loop.is_closed():
            return
        if self._on_loop_thread():
            self._pump.cancel()
            log.warning("tracing shut down on its own loop: %d queued spans not exported", len(self._queue))
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)

    async def _close(self) -> None:
        self._stopping.set()
        # the pump finishes the batch it may be sending, then sends what is queued, and ends
        await asyncio.gather(self._pump, return_exceptions=True)
        await self.flush_async()
        for exporter in self._exporters:
            try:
                closing = getattr(exporter, "aclose", None)
                if closing is not None:
                    await closing()
                else:
                    await asyncio.to_thread(exporter.shutdown)
            except Exception as error:
                log.warning("trace exporter shutdown failed: %s", error)


async def _export(exporter: Exporter, batch: list[Any]) -> None:
    send = getattr(exporter, "export_async", None)
    if send is not None:
        await send(batch)
    else:
        await asyncio.to_thread(exporter.export, batch)
