"""A lean implementation of OpenTelemetry's tracing API.

The OpenTelemetry SDK's span keeps limits, locks, bounded attribute maps and a chain of
processors, which costs about 30 µs a span in CPython: a sidecar serving a request in a
few hundred microseconds cannot afford that on every call. These spans implement the
same API (``opentelemetry.trace.Span`` and ``Tracer``, so interceptors, propagators and
``trace.get_current_span()`` work unchanged) and record only what exporters send: name,
kind, ids, times, attributes, events, links and status. Finished spans expose the fields
of the SDK's ``ReadableSpan`` that exporters read, so SDK span exporters accept them too.

Sampling is parent-based: a span continues its parent's decision, and a root span is
sampled when the low 64 bits of its trace id fall under ``ratio * 2**64`` (as the SDK's
``TraceIdRatioBased`` decides, so the same trace is sampled alike by both).
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import Attributes, AttributeValue

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_EMPTY_STATE = TraceState()
_UNSET = Status(StatusCode.UNSET)
_getrandbits = random.getrandbits
_time_ns = time.time_ns


@dataclass(frozen=True)
class Event:
    name: str
    timestamp: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


class SpanProcessor(Protocol):
    """What sees spans start and end (the SDK's SpanProcessor has the same shape)."""

    def on_start(self, span: Any, parent_context: Context | None = None) -> None: ...

    def on_end(self, span: Any) -> None: ...

    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool: ...


class RecordedSpan(trace.Span):
    """A sampled span, recording until it ends."""

    __slots__ = (
        "_context",
        "_tracer",
        "attributes",
        "end_time",
        "events",
        "kind",
        "links",
        "name",
        "parent",
        "span_id",
        "start_time",
        "status",
        "trace_id",
        "trace_state",
    )

    def __init__(  # noqa: PLR0917  # positional on purpose: this runs on every request
        self,
        tracer: LeanTracer,
        name: str,
        trace_id: int,
        span_id: int,
        trace_state: TraceState,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        links: Sequence[Link],
        start_time: int,
    ) -> None:
        self.name = name
        self.kind = kind
        self.trace_id, self.span_id, self.trace_state = trace_id, span_id, trace_state
        self._context: SpanContext | None = None  # built when first asked for (often only by the exporter)
        self.parent = parent
        self.start_time = start_time
        self.end_time: int | None = None
        self.attributes = attributes
        self.events: list[Event] | tuple[()] = ()  # most spans have none: a list only once one comes
        self.links: Sequence[Link] = tuple(links) if links else ()
        self.status = _UNSET
        self._tracer = tracer

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(self.trace_id, self.span_id, False, _SAMPLED, self.trace_state)
        return context

    context = property(get_span_context)  # the name exporters read, as on the SDK's ReadableSpan

    @property
    def resource(self) -> Any:
        return self._tracer.resource

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self.end_time is None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self.end_time is None:
            self.attributes.update(attributes)

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        if self.end_time is None:
            if not self.events:
                self.events = []
            self.events.append(Event(name, timestamp or _time_ns(), dict(attributes or {})))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self.end_time is None and context.is_valid:
            self.links = (*self.links, Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return  # OK is final, as the specification says
        new = status if isinstance(status, Status) else Status(status, description)
        if new.status_code is not StatusCode.UNSET:
            self.status = new

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        recorded: dict[str, AttributeValue] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        recorded.update(attributes or {})
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            return
        self.end_time = end_time or _time_ns()
        for processor in self._tracer.processors:
            processor.on_end(self)


class _CurrentSpan:
    """``with tracer.start_as_current_span(...)``: the span is current inside the block."""

    __slots__ = ("_end", "_record", "_set_status", "_token", "span")

    def __init__(self, span: trace.Span, end_on_exit: bool, record: bool, set_status: bool) -> None:
        self.span, self._end, self._record, self._set_status = span, end_on_exit, record, set_status

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        try:
            if isinstance(error, Exception) and self.span.is_recording():
                if self._record:
                    self.span.record_exception(error, escaped=True)
                if self._set_status:
                    self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            if self._end:
                self.span.end()
        finally:
            otel_context.detach(self._token)


class LeanTracer(trace.Tracer):
    """Starts :class:`RecordedSpan` s (sampled) or ``NonRecordingSpan`` s (not sampled)."""

    def __init__(self, sampling_ratio: float, resource: Any = None) -> None:
        self._bound = round(max(0.0, min(1.0, sampling_ratio)) * (1 << 64))
        self.resource = resource
        self.processors: list[SpanProcessor] = []
        self._start_processors: list[SpanProcessor] = []

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self.processors.append(processor)
        if getattr(processor, "watches_starts", True):  # most only want finished spans
            self._start_processors.append(processor)

    def _root_sampled(self, trace_id: int) -> bool:
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self._bound

    def start_span(  # noqa: PLR0917  # the positional order is the API's
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id, sampled, state = parent.trace_id, parent.trace_flags.sampled, parent.trace_state
        else:
            parent, trace_id, state = None, _getrandbits(128) or 1, _EMPTY_STATE
            sampled = self._root_sampled(trace_id)
        if not sampled:
            return NonRecordingSpan(SpanContext(trace_id, _getrandbits(64) or 1, False, _NOT_SAMPLED, state))
        span = RecordedSpan(
            self,
            name,
            trace_id,
            _getrandbits(64) or 1,
            state,
            parent,
            kind,
            dict(attributes) if attributes else {},
            links or (),
            start_time or _time_ns(),
        )
        for processor in self._start_processors:
            processor.on_start(span, context)
        return span

    def start_root_span(self, name: str, kind: SpanKind, attributes: Mapping[str, AttributeValue]) -> trace.Span:
        """``start_span(name, Context(), kind, attributes)``: a span of a new trace, without looking
        for a parent (what a server does for a caller that sent no trace context)."""
        trace_id = _getrandbits(128) or 1
        if not self._root_sampled(trace_id):
            return NonRecordingSpan(SpanContext(trace_id, _getrandbits(64) or 1, False, _NOT_SAMPLED, _EMPTY_STATE))
        span = RecordedSpan(
            self, name, trace_id, _getrandbits(64) or 1, _EMPTY_STATE, None, kind, dict(attributes), (), _time_ns()
        )
        for processor in self._start_processors:
            processor.on_start(span, None)
        return span

    def start_as_current_span(  # type: ignore[override]  # noqa: PLR0917  # the API's order; returns a plain context manager
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _CurrentSpan:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        return _CurrentSpan(span, end_on_exit, record_exception, set_status_on_exception)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self.processors)
