"""In-process trace receivers for tests: an OTLP/gRPC collector and a SkyWalking OAP
collector, each keeping what it receives.

::

    with OtlpReceiver() as otlp, SkyWalkingCollector() as oap:
        settings = TracingSettings(exporters=("otlp", "skywalking"),
                                   otlp_endpoint=otlp.endpoint, skywalking_address=oap.address)
        ...
        spans = otlp.wait_for(lambda spans: len(spans) >= 3)

They are synchronous gRPC servers on their own threads, so exporters flushing from an
event loop's thread never wait on that loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from layotto.proto.skywalking.v3 import common_pb2, tracing_pb2_grpc

__all__ = ["OtlpReceiver", "ReceivedSpan", "SkyWalkingCollector"]

T = TypeVar("T")


@dataclass(frozen=True)
class ReceivedSpan:
    """An OTLP span, flattened: ids as hex, attributes as a dict."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    start_ns: int = 0
    end_ns: int = 0


class _Receiver(Generic[T]):
    def __init__(self) -> None:
        self._items: list[T] = []
        self._lock = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def _add(self, items: list[T]) -> None:
        with self._lock:
            self._items.extend(items)
            self._lock.notify_all()

    @property
    def items(self) -> list[T]:
        with self._lock:
            return list(self._items)

    def wait_for(self, condition: Callable[[list[T]], bool], timeout: float = 30.0) -> list[T]:
        """What was received once ``condition`` holds; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(self._items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not received within {timeout}s; got {len(self._items)} items")
                self._lock.wait(left)
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.stop(grace=None)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver(_Receiver[ReceivedSpan], trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector on a free loopback port."""

    def __init__(self) -> None:
        super().__init__()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request: Any, context: Any) -> Any:
        spans: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                spans.extend(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        status_code=span.status.code,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                    )
                    for span in scope_spans.spans
                )
        self._add(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class SkyWalkingCollector(_Receiver[Any], tracing_pb2_grpc.TraceSegmentReportServiceServicer):
    """A SkyWalking OAP's trace collector (``TraceSegmentReportService``) on a free loopback port;
    its items are ``SegmentObject`` messages."""

    def __init__(self) -> None:
        super().__init__()
        tracing_pb2_grpc.add_TraceSegmentReportServiceServicer_to_server(self, self._server)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def collect(self, request_iterator: Iterator[Any], context: Any) -> Any:
        for segment in request_iterator:  # kept one by one: an agent may cut the stream at exit
            self._add([segment])
        return common_pb2.Commands()

    def collectInSync(self, request: Any, context: Any) -> Any:
        self._add(list(request.segments))
        return common_pb2.Commands()

    def segments_of(self, trace_id: str) -> list[Any]:
        return [s for s in self.items if s.traceId == trace_id]
