"""Sampled capture of received unary gRPC calls into rotating files (Layotto's tcpcopy, at the gRPC level).

:class:`TrafficCapture` is a server interceptor. For each unary call of an eligible method (the
``methods`` of the config, else every method but health checks and reflection) it decides, by
count, whether the call is sampled: of every ``n`` eligible calls, ``floor(n * sample_ratio)`` are.
A sampled call's handler is wrapped to keep the request's bytes as received (its deserializer sees
them) and to time it; when it ends, a record (method, metadata without credentials, request bytes,
status, duration) goes into a bounded queue that a writer thread empties into the files
(:mod:`layotto.server.traffic.files`). Nothing is written on the event loop, and a call never
waits for or fails because of the capture: a record that finds the queue full is dropped and
counted in :attr:`TrafficCapture.dropped`. Streaming calls are not captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from layotto.server.rpc_status import status_name
from layotto.server.traffic.files import CallRecord, RotatingFiles, kept_metadata
from layotto.server.traffic.settings import CaptureSettings

log = logging.getLogger(__name__)

#: never captured unless named in ``methods``
DEFAULT_EXCLUDED = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_Item = CallRecord | threading.Event | None  # a record, a flush marker, or the end


class TrafficCapture(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Captures a sample of the unary calls (see the module). :meth:`start` before serving, :meth:`aclose` after.

    The queue holds at most ``queue_size`` records and ``max_file_bytes`` request bytes; what would
    exceed either is dropped (and counted), so a writer that falls behind costs bounded memory.

    Counters (read from any thread): ``eligible`` calls seen, ``sampled`` calls queued, ``dropped``
    records (queue full, by count or bytes), ``written`` records, ``too_large`` requests larger than
    a whole file (dropped before the queue) and ``files.too_large`` records whose line is,
    ``files.bytes_written`` and ``files.files_opened``; exported on ``/metrics`` by
    :mod:`layotto.server.metrics_capture`.
    """

    def __init__(self, settings: CaptureSettings) -> None:
        self._settings = settings
        self._ratio = settings.sample_ratio
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=settings.queue_size)
        # request bytes waiting in the queue, bounded by a file's size as its count is by queue_size
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self.too_large = 0  # requests larger than a whole file, dropped before the queue
        self._eligibility: dict[str, bool] = {}
        self.files: RotatingFiles | None = None
        self._writer: threading.Thread | None = None
        self.eligible = 0
        self.sampled = 0
        self.dropped = 0
        self.written = 0

    def start(self) -> None:
        """Open the directory and start the writer thread; OSError when the directory cannot be made."""
        settings = self._settings
        self.files = RotatingFiles(Path(settings.dir).expanduser(), settings.max_file_bytes, settings.max_files)
        self._writer = threading.Thread(target=self._write_all, name="layotto-traffic-capture", daemon=True)
        self._writer.start()
        log.info(
            "traffic capture: %s of the %s calls into %s (files of at most %d bytes, at most %d files)",
            f"{settings.sample_ratio:g}",
            "unary" if not settings.methods else f"unary {', '.join(settings.methods)}",
            settings.dir,
            settings.max_file_bytes,
            settings.max_files,
        )

    async def flush(self) -> None:
        """Return once every record queued before the call is written to its file (and flushed)."""
        if self._writer is None:
            return
        done = threading.Event()
        await asyncio.to_thread(self._queue.put, done)
        await asyncio.to_thread(done.wait)

    async def aclose(self) -> None:
        """Write what is queued, close the files and stop the writer thread."""
        if self._writer is None:
            return
        await asyncio.to_thread(self._queue.put, None)
        await asyncio.to_thread(self._writer.join)
        self._writer = None

    def _is_eligible(self, method: str) -> bool:
        eligible = self._eligibility.get(method)
        if eligible is None:
            wanted = self._settings.methods
            eligible = method.startswith(wanted) if wanted else not method.startswith(DEFAULT_EXCLUDED)
            if len(self._eligibility) < 4096:  # the proxy serves any method name: the cache stays bounded
                self._eligibility[method] = eligible
        return eligible

    def _is_sampled(self) -> bool:
        seen = self.eligible
        self.eligible = seen + 1
        return int((seen + 1) * self._ratio) > int(seen * self._ratio)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # a handler, or None for an unknown method
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not self._is_eligible(handler_call_details.method):
            return handler
        if not self._is_sampled():
            return handler
        return self._capturing(handler, handler_call_details)

    def _capturing(self, handler: Any, details: grpc.HandlerCallDetails) -> Any:
        received = time.time()
        method = details.method
        raw: list[bytes] = []
        decode = handler.request_deserializer
        behavior = handler.unary_unary

        def deserialize(data: bytes) -> Any:
            raw.append(bytes(data))
            return data if decode is None else decode(data)

        async def captured(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                body = raw[0] if raw else request if isinstance(request, bytes) else b""
                metadata = kept_metadata(details.invocation_metadata)
                self._offer(CallRecord(method, metadata, body, status_name(context, error), elapsed_ms, received))

        return grpc.unary_unary_rpc_method_handler(
            captured, request_deserializer=deserialize, response_serializer=handler.response_serializer
        )

    def _offer(self, record: CallRecord) -> None:
        size = len(record.request)
        budget = self._settings.max_file_bytes
        if size > budget:  # its line (longer than the request) could never go into a file
            self.too_large += 1
            return
        with self._queued_lock:
            if self._queued_bytes + size > budget:
                self._drop()
                return
            self._queued_bytes += size
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._release(size)
            self._drop()
            return
        self.sampled += 1

    def _drop(self) -> None:
        """Count a record the writer had no room for (by count or by bytes)."""
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 10000 == 0:
            log.warning("traffic capture: the writer is behind, %d records dropped so far", self.dropped)

    def _release(self, size: int) -> None:
        with self._queued_lock:
            self._queued_bytes -= size

    def _write_all(self) -> None:
        """The writer thread: records to lines to files, until the end marker."""
        files = self.files
        assert files is not None
        failed = False
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                with contextlib.suppress(OSError):  # reported by the write that failed
                    files.flush()
                item.set()
                continue
            self._release(len(item.request))
            try:
                files.write(item.to_line())
                self.written += 1
                if self._queue.empty():
                    files.flush()
            except OSError as error:
                if not failed:
                    log.error("traffic capture: cannot write to %s: %s", self._settings.dir, error)
                failed = True
        files.close()
