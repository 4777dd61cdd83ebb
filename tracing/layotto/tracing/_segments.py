"""OpenTelemetry spans as SkyWalking segments.

SkyWalking groups the spans of one request in one process into a *segment*, numbering
them from 0 (the first span) with parent numbers inside the segment. The
:class:`SegmentTracker` processor gives every span, as it starts, its segment id, its
number and its parent's number as attributes; the sw8 propagator reads them when a call
leaves the process, and :class:`SkyWalkingExporter` reads them to build segments.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from layotto.tracing._sw8 import ENDPOINT, PARENT_SPAN_ID, REF_PREFIX, SEGMENT_ID, SPAN_ID, peer_of, sw_trace_id

log = logging.getLogger(__name__)

#: SkyWalking component ids (component-libraries.yml) and layers for db.system values
_COMPONENTS = {
    "redis": (7, "Cache"),
    "postgresql": (22, "Database"),
    "mysql": (5, "Database"),
    "mariadb": (5, "Database"),
    "etcd": (23, "Database"),
    "zookeeper": (7000, "Database"),
    "sqlite": (7000, "Database"),
    "nats": (7000, "MQ"),
    "rabbitmq": (52, "MQ"),
    "mqtt": (7000, "MQ"),
}
GRPC_COMPONENT = 23
GENERAL_COMPONENT = 7000
STALE_SECONDS = 120.0


class SegmentTracker(SpanProcessor):
    """Numbers spans into SkyWalking segments as they start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, tuple[str, int, str]] = {}  # span id -> (segment id, number, endpoint)
        self._counters: dict[str, itertools.count[int]] = {}
        self._members: dict[str, list[int]] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not span.is_recording():
            return
        parent = span.parent
        with self._lock:
            owner = self._live.get(parent.span_id) if parent is not None and not parent.is_remote else None
            if owner is None:  # the first span of a segment
                segment_id = uuid.uuid4().hex
                self._counters[segment_id] = itertools.count(1)
                self._members[segment_id] = []
                number, parent_number, endpoint = 0, -1, span.name
            else:
                segment_id, parent_number, endpoint = owner
                number = next(self._counters[segment_id])
            self._live[span.context.span_id] = (segment_id, number, endpoint)
            self._members[segment_id].append(span.context.span_id)
        span.set_attributes(
            {SEGMENT_ID: segment_id, SPAN_ID: number, PARENT_SPAN_ID: parent_number, ENDPOINT: endpoint}
        )

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        if attributes.get(SPAN_ID) != 0:
            return
        segment_id = str(attributes.get(SEGMENT_ID))
        with self._lock:  # the segment's first span ended: forget the segment
            for member in self._members.pop(segment_id, []):
                self._live.pop(member, None)
            self._counters.pop(segment_id, None)

    def shutdown(self) -> None:
        with self._lock:
            self._live.clear()
            self._counters.clear()
            self._members.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _millis(nanos: int | None) -> int:
    return (nanos or time.time_ns()) // 1_000_000


def _span_type(kind: SpanKind) -> str:
    if kind in (SpanKind.SERVER, SpanKind.CONSUMER):
        return "Entry"
    if kind in (SpanKind.CLIENT, SpanKind.PRODUCER):
        return "Exit"
    return "Local"


def to_span_object(span: ReadableSpan, tracing_pb2: Any, common_pb2: Any) -> Any:
    attributes = dict(span.attributes or {})
    system = str(attributes.get("db.system") or attributes.get("messaging.system") or "")
    component, layer = _COMPONENTS.get(system, (GENERAL_COMPONENT, "Unknown"))
    if attributes.get("rpc.system") == "grpc" and not system:
        component, layer = GRPC_COMPONENT, "RPCFramework"
    peer = peer_of(attributes)
    kind = _span_type(span.kind)
    out = tracing_pb2.SpanObject(
        spanId=int(attributes.get(SPAN_ID, 0)),  # type: ignore[arg-type]
        parentSpanId=int(attributes.get(PARENT_SPAN_ID, -1)),  # type: ignore[arg-type]
        startTime=_millis(span.start_time),
        endTime=_millis(span.end_time),
        operationName=span.name,
        peer=peer if kind == "Exit" else "",
        spanType=tracing_pb2.SpanType.Value(kind),
        spanLayer=tracing_pb2.SpanLayer.Value(layer),
        componentId=component,
        isError=span.status.status_code is StatusCode.ERROR,
        tags=[
            common_pb2.KeyStringValuePair(key=k, value=str(v))
            for k, v in attributes.items()
            if not k.startswith(("sw.", REF_PREFIX))
        ],
    )
    if f"{REF_PREFIX}segment_id" in attributes:
        out.refs.append(
            tracing_pb2.SegmentReference(
                refType=tracing_pb2.RefType.Value("CrossProcess"),
                traceId=str(attributes[f"{REF_PREFIX}trace_id"]),
                parentTraceSegmentId=str(attributes[f"{REF_PREFIX}segment_id"]),
                parentSpanId=int(attributes[f"{REF_PREFIX}span_id"]),  # type: ignore[arg-type]
                parentService=str(attributes[f"{REF_PREFIX}service"]),
                parentServiceInstance=str(attributes[f"{REF_PREFIX}instance"]),
                parentEndpoint=str(attributes[f"{REF_PREFIX}endpoint"]),
                networkAddressUsedAtPeer=str(attributes[f"{REF_PREFIX}peer"]),
            )
        )
    return out


class SkyWalkingExporter(SpanExporter):
    """Reports segments to a SkyWalking OAP (``TraceSegmentReportService/collect``).

    Spans wait until their segment's first span has ended, then the whole segment goes
    out in one message; a segment whose first span never comes is sent after
    ``STALE_SECONDS`` as it is.
    """

    def __init__(self, address: str, service: str, instance: str, timeout: float = 10.0) -> None:
        from layotto.proto.skywalking.v3 import common_pb2, tracing_pb2, tracing_pb2_grpc

        self._tracing_pb2, self._common_pb2 = tracing_pb2, common_pb2
        self._channel = grpc.insecure_channel(address)
        self._stub = tracing_pb2_grpc.TraceSegmentReportServiceStub(self._channel)
        self._service, self._instance, self._timeout = service, instance, timeout
        self._pending: dict[str, list[ReadableSpan]] = {}
        self._first_seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ready = self._complete_segments(spans)
        if not ready:
            return SpanExportResult.SUCCESS
        try:
            self._stub.collect(iter(ready), timeout=self._timeout)
        except grpc.RpcError as error:
            log.warning("SkyWalking export of %d segments failed: %s", len(ready), error)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _complete_segments(self, spans: Sequence[ReadableSpan]) -> list[Any]:
        now = time.monotonic()
        done: list[list[ReadableSpan]] = []
        with self._lock:
            for span in spans:
                segment_id = str((span.attributes or {}).get(SEGMENT_ID, ""))
                if not segment_id:
                    continue
                self._pending.setdefault(segment_id, []).append(span)
                self._first_seen.setdefault(segment_id, now)
                if (span.attributes or {}).get(SPAN_ID) == 0:
                    done.append(self._pending.pop(segment_id))
                    self._first_seen.pop(segment_id, None)
            for segment_id, seen in list(self._first_seen.items()):
                if now - seen > STALE_SECONDS:
                    done.append(self._pending.pop(segment_id))
                    del self._first_seen[segment_id]
        return [self._segment(members) for members in done]

    def _segment(self, members: list[ReadableSpan]) -> Any:
        first = min(members, key=lambda s: int((s.attributes or {}).get(SPAN_ID, 0)))  # type: ignore[arg-type]
        return self._tracing_pb2.SegmentObject(
            traceId=sw_trace_id(first.context),
            traceSegmentId=str((first.attributes or {})[SEGMENT_ID]),
            spans=[to_span_object(s, self._tracing_pb2, self._common_pb2) for s in members],
            service=self._service,
            serviceInstance=self._instance,
        )

    def shutdown(self) -> None:
        with self._lock:
            leftovers = [self._segment(members) for members in self._pending.values()]
            self._pending.clear()
            self._first_seen.clear()
        if leftovers:
            try:
                self._stub.collect(iter(leftovers), timeout=self._timeout)
            except grpc.RpcError as error:
                log.warning("SkyWalking export at shutdown failed: %s", error)
        self._channel.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
