"""The lean tracer: OpenTelemetry API behaviour, sampling, the OTLP wire encoding (decoded
back with opentelemetry-proto), batching, and export to a real gRPC receiver."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
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

from layotto.tracing import Tracing, TracingSettings
from layotto.tracing._batch import BatchProcessor
from layotto.tracing._loop_batch import LoopBatchProcessor
from layotto.tracing._otlp import OtlpExporter, SpanEncoder, parse_headers
from layotto.tracing._spans import LeanTracer, RecordedSpan
from layotto.tracing.testing import OtlpReceiver


class Collect:
    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def tracer(ratio: float = 1.0) -> tuple[LeanTracer, Collect]:
    out, collected = LeanTracer(ratio), Collect()
    out.add_span_processor(collected)
    return out, collected


def remote(trace_id: int, span_id: int, sampled: bool, state: TraceState | None = None) -> Any:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(trace_id, span_id, True, flags, state)))


def test_children_share_the_trace_and_point_at_their_parent() -> None:
    lean, collected = tracer()
    with lean.start_as_current_span("outer", kind=SpanKind.SERVER) as outer:
        assert trace.get_current_span() is outer
        with lean.start_as_current_span("inner") as inner:
            pass
    assert trace.get_current_span() is trace.INVALID_SPAN  # the context is restored
    assert [s.name for s in collected.spans] == ["inner", "outer"]
    assert isinstance(inner, RecordedSpan) and isinstance(outer, RecordedSpan)
    assert inner.context.trace_id == outer.context.trace_id
    assert inner.parent == outer.context and outer.parent is None
    assert outer.end_time is not None and inner.end_time is not None
    assert outer.start_time <= inner.start_time <= inner.end_time <= outer.end_time


def test_an_escaping_exception_is_recorded_and_marks_the_span() -> None:
    lean, collected = tracer()
    with pytest.raises(KeyError), lean.start_as_current_span("failing"):
        raise KeyError("k")
    (span,) = collected.spans
    assert span.status.status_code is StatusCode.ERROR and "KeyError" in span.status.description
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "KeyError"
    assert "raise KeyError" in event.attributes["exception.stacktrace"]


def test_ended_spans_are_frozen_and_ok_is_final() -> None:
    lean, _ = tracer()
    span = lean.start_span("s")
    span.set_status(Status(StatusCode.OK))
    span.set_status(Status(StatusCode.ERROR, "late"))
    span.end()
    span.set_attribute("after", 1)
    span.end()  # a second end is ignored
    assert isinstance(span, RecordedSpan)
    assert span.status.status_code is StatusCode.OK and "after" not in span.attributes
    assert not span.is_recording()


def test_sampling_follows_the_parent_and_the_ratio() -> None:
    lean, collected = tracer(ratio=0.0)
    unsampled_root = lean.start_span("root")
    assert not unsampled_root.is_recording() and not unsampled_root.get_span_context().trace_flags.sampled
    child = lean.start_span("child", context=remote(7, 9, sampled=True, state=TraceState([("sw", "abc")])))
    assert child.is_recording() and child.get_span_context().trace_id == 7
    assert child.get_span_context().trace_state.get("sw") == "abc"  # the caller's trace state travels on
    assert not lean.start_span("child", context=remote(7, 9, sampled=False)).is_recording()
    assert collected.spans == []  # nothing ended yet; unsampled spans never reach processors
    child.end()
    unsampled_root.end()
    assert collected.spans == [child]
    always, _ = tracer(ratio=1.0)
    assert always.start_span("root").is_recording()
    half, _ = tracer(ratio=0.5)
    sampled = sum(half.start_span("r").is_recording() for _ in range(2000))
    assert 800 < sampled < 1200


def test_the_ratio_decides_like_the_sdk_on_the_trace_id_low_bits() -> None:
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    lean, _ = tracer(ratio=0.25)
    sdk = TraceIdRatioBased(0.25)
    for trace_id in (1, 2**63, 2**62 - 1, 2**62, (5 << 64) | 2**61, 2**64 - 1):
        expected = sdk.should_sample(None, trace_id, "x").decision is Decision.RECORD_AND_SAMPLE
        assert lean._root_sampled(trace_id) == expected, trace_id


def decode(encoder: SpanEncoder, spans: Sequence[Any]) -> Any:
    return ExportTraceServiceRequest.FromString(encoder.request(spans))


def test_the_wire_encoding_decodes_to_every_field() -> None:
    lean, collected = tracer()
    parent = remote(0xABC, 0xDEF, sampled=True, state=TraceState([("sw", "t1")]))
    span = lean.start_span(
        "GET",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes={"s": "x", "b": True, "i": -5, "f": 1.5, "l": ["a", "b"], "big": 2**40},
        links=[Link(SpanContext(1, 2, True), {"why": "batch"})],
    )
    span.add_event("retry", {"attempt": 2}, timestamp=123)
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end()
    request = decode(SpanEncoder({"service.name": "svc", "pid": 42}), collected.spans)
    (resource_spans,) = request.resource_spans
    assert {a.key: a.value for a in resource_spans.resource.attributes}["service.name"].string_value == "svc"
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "layotto"
    (out,) = scope_spans.spans
    assert out.trace_id == (0xABC).to_bytes(16, "big") and out.parent_span_id == (0xDEF).to_bytes(8, "big")
    assert out.span_id == span.get_span_context().span_id.to_bytes(8, "big")
    assert out.trace_state == "sw=t1" and out.name == "GET" and out.kind == 3  # SPAN_KIND_CLIENT
    assert out.flags == 0x301  # sampled, has-is-remote, is-remote (the parent came from another process)
    assert isinstance(span, RecordedSpan) and span.end_time is not None
    assert (out.start_time_unix_nano, out.end_time_unix_nano) == (span.start_time, span.end_time)
    values = {a.key: a.value for a in out.attributes}
    assert values["s"].string_value == "x" and values["b"].bool_value is True
    assert values["i"].int_value == -5 and values["f"].double_value == 1.5 and values["big"].int_value == 2**40
    assert [v.string_value for v in values["l"].array_value.values] == ["a", "b"]
    assert out.events[0].name == "retry" and out.events[0].time_unix_nano == 123
    assert out.events[0].attributes[0].value.int_value == 2
    assert out.links[0].trace_id == (1).to_bytes(16, "big") and out.links[0].attributes[0].key == "why"
    assert out.status.code == 2 and out.status.message == "boom"


def test_cached_attribute_encodings_do_not_mix_up_types() -> None:
    lean, collected = tracer()
    for value in (1, True, 1.0, "1"):
        lean.start_span("s", attributes={"v": value}).end()
    spans = decode(SpanEncoder({}), collected.spans).resource_spans[0].scope_spans[0].spans
    kinds = [s.attributes[0].value.WhichOneof("value") for s in spans]
    assert kinds == ["int_value", "bool_value", "double_value", "string_value"]


class Failing:
    def export(self, spans: Sequence[Any]) -> None:
        raise RuntimeError("collector down")

    def shutdown(self) -> None:
        pass


class Keeping:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> None:
        with self.lock:
            self.batches.append(list(spans))

    def shutdown(self) -> None:
        pass


def test_batches_reach_every_exporter_even_when_one_fails() -> None:
    keeping = Keeping()
    processor = BatchProcessor([Failing(), keeping], delay=30.0, max_batch=4)
    lean, _ = tracer()
    lean.add_span_processor(processor)
    for i in range(10):
        lean.start_span(f"s{i}").end()
    assert processor.force_flush(10_000)
    assert [s.name for batch in keeping.batches for s in batch] == [f"s{i}" for i in range(10)]
    assert max(len(b) for b in keeping.batches) <= 4
    processor.shutdown()


def test_a_full_queue_drops_and_counts_instead_of_growing() -> None:
    keeping = Keeping()
    processor = BatchProcessor([keeping], delay=30.0, max_batch=1000, max_queue=5)
    with keeping.lock:  # hold the exporter so nothing drains while spans end
        lean, _ = tracer()
        lean.add_span_processor(processor)
        for i in range(8):
            lean.start_span(f"s{i}").end()
        assert processor.dropped == 3
    processor.shutdown()
    assert [s.name for batch in keeping.batches for s in batch] == [f"s{i}" for i in range(5)]


def test_otlp_export_reaches_a_receiver() -> None:
    with OtlpReceiver() as receiver:
        tracing = Tracing(TracingSettings(exporters=("otlp",), service_name="lean", otlp_endpoint=receiver.endpoint))
        with tracing.tracer.start_as_current_span("outer", attributes={"k": "v"}):
            tracing.tracer.start_span("inner").end()
        assert tracing.force_flush()
        spans = receiver.wait_for(lambda got: len(got) >= 2)
        tracing.shutdown()
    by_name = {s.name: s for s in spans}
    assert by_name["inner"].parent_span_id == by_name["outer"].span_id
    assert by_name["outer"].service == "lean" and by_name["outer"].attributes == {"k": "v"}


def test_otlp_export_to_nothing_gives_up_without_raising() -> None:
    exporter = OtlpExporter("http://127.0.0.1:1", {}, timeout=0.5, retries=1)
    lean, collected = tracer()
    lean.start_span("s").end()
    with pytest.raises(Exception, match=r"OTLP export of 1 spans to http://127\.0\.0\.1:1 failed"):
        exporter.export(collected.spans)
    exporter.shutdown()


def test_otlp_headers_are_parsed_like_the_sdk() -> None:
    assert parse_headers("Api-Key=a%20b, x=1,,broken") == [("api-key", "a b"), ("x", "1")]


def test_half_a_batch_wakes_the_exporter_before_its_delay() -> None:
    keeping = Keeping()
    processor = BatchProcessor([keeping], delay=60.0, max_batch=4)
    lean, _ = tracer()
    lean.add_span_processor(processor)
    lean.start_span("a").end()
    lean.start_span("b").end()
    deadline = time.monotonic() + 10
    while not keeping.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s.name for batch in keeping.batches for s in batch] == ["a", "b"]  # not after 60 s
    processor.shutdown()


def test_processors_see_starts_unless_they_say_they_do_not_watch_them() -> None:
    class Starts(Collect):
        def __init__(self) -> None:
            super().__init__()
            self.started: list[str] = []

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            self.started.append(span.name)

    class Blind(Starts):
        watches_starts = False

    lean, watching, blind = LeanTracer(1.0), Starts(), Blind()
    lean.add_span_processor(watching)
    lean.add_span_processor(blind)
    lean.start_span("s").end()
    assert watching.started == ["s"] and blind.started == []
    assert [s.name for s in blind.spans] == ["s"]  # ends still reach it


async def test_on_the_loop_batches_go_out_without_a_thread_and_flush_from_another_thread() -> None:
    with OtlpReceiver() as receiver:
        loop = asyncio.get_running_loop()
        settings = TracingSettings(exporters=("otlp",), service_name="looped", otlp_endpoint=receiver.endpoint)
        keeping, failing = Keeping(), Failing()
        tracing = Tracing(settings, extra_exporters=(failing, keeping), loop=loop)
        (processor,) = tracing.tracer.processors
        assert isinstance(processor, LoopBatchProcessor)
        with tracing.tracer.start_as_current_span("outer"):
            tracing.tracer.start_span("inner").end()
        with pytest.raises(RuntimeError, match="await flush_async"):
            tracing.force_flush()  # it would block the very loop that exports
        assert await asyncio.to_thread(tracing.force_flush)
        spans = await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 2)
        assert {s.name for s in spans} == {"outer", "inner"} and spans[0].service == "looped"
        assert [s.name for batch in keeping.batches for s in batch] == ["inner", "outer"]  # sync exporters too
        tracing.tracer.start_span("last").end()
        await asyncio.to_thread(tracing.shutdown)  # what is still queued goes out first
        await asyncio.to_thread(receiver.wait_for, lambda got: any(s.name == "last" for s in got))


async def test_the_loop_exporter_sends_on_its_own_schedule() -> None:
    keeping = Keeping()
    processor = LoopBatchProcessor([keeping], asyncio.get_running_loop(), delay=0.05)
    lean, _ = tracer()
    lean.add_span_processor(processor)
    lean.start_span("a").end()
    for _ in range(200):
        if keeping.batches:
            break
        await asyncio.sleep(0.01)
    assert [s.name for batch in keeping.batches for s in batch] == ["a"]
    await asyncio.to_thread(processor.shutdown)


class Connecting:
    """An exporter whose first send waits for its connection (a collector slow to accept one, a
    loaded machine) before the spans are delivered."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()
        self.delivered: list[str] = []

    async def export_async(self, spans: Sequence[Any]) -> None:
        self.sending.set()
        await asyncio.sleep(0.2)  # connecting: nothing has left yet
        self.delivered += [s.name for s in spans]

    def export(self, spans: Sequence[Any]) -> None:
        raise AssertionError("sent from the loop")

    def shutdown(self) -> None:
        pass


async def test_stopping_while_a_batch_is_being_sent_lets_that_batch_go_out() -> None:
    """Shutdown arriving while the exporter's own round sends a batch: the batch was taken from the
    queue, so cancelling the send lost it (a runtime stopped one second after a call lost the call's
    spans when its first export was still connecting)."""
    connecting = Connecting()
    processor = LoopBatchProcessor([connecting], asyncio.get_running_loop(), delay=0.01)
    lean, _ = tracer()
    lean.add_span_processor(processor)
    lean.start_span("in flight").end()
    await asyncio.wait_for(connecting.sending.wait(), 10)
    lean.start_span("queued").end()
    await asyncio.to_thread(processor.shutdown)
    assert connecting.delivered == ["in flight", "queued"]


async def test_a_flush_returns_once_the_batch_being_sent_went_out() -> None:
    """force_flush while the exporter's own round sends a batch: it returns after that batch, not as
    soon as the queue is empty (a caller reading the collector next missed the batch)."""
    connecting = Connecting()
    processor = LoopBatchProcessor([connecting], asyncio.get_running_loop(), delay=0.01)
    lean, _ = tracer()
    lean.add_span_processor(processor)
    lean.start_span("in flight").end()
    await asyncio.wait_for(connecting.sending.wait(), 10)
    assert await asyncio.to_thread(processor.force_flush)
    assert connecting.delivered == ["in flight"]
    await asyncio.to_thread(processor.shutdown)


def test_a_root_span_samples_like_start_span_and_owns_its_attributes() -> None:
    attributes = {"rpc.method": "GetState"}
    kept, collected = tracer(ratio=1.0)
    span = kept.start_root_span("GetState", SpanKind.SERVER, attributes)
    span.set_attribute("rpc.grpc.status_code", 0)
    span.end()
    (out,) = collected.spans
    assert out.parent is None and out.kind is SpanKind.SERVER and out.context.trace_flags.sampled
    assert attributes == {"rpc.method": "GetState"}, "the caller's attribute dict is not changed"
    dropped, nothing = tracer(ratio=0.0)
    none = dropped.start_root_span("GetState", SpanKind.SERVER, attributes)
    assert not none.is_recording() and none.get_span_context().is_valid
    none.end()
    assert nothing.spans == []


async def test_a_lone_otlp_exporter_on_the_loop_gets_spans_encoded_as_they_end() -> None:
    with OtlpReceiver() as receiver:
        settings = TracingSettings(exporters=("otlp",), service_name="eager", otlp_endpoint=receiver.endpoint)
        tracing = Tracing(settings, loop=asyncio.get_running_loop())
        (processor,) = tracing.tracer.processors
        assert isinstance(processor, LoopBatchProcessor)
        with tracing.tracer.start_as_current_span("outer", attributes={"k": "v"}):
            tracing.tracer.start_span("inner", kind=SpanKind.CLIENT).end()
        assert all(isinstance(queued, bytes) for queued in processor._queue), "kept encoded, not as objects"
        await processor.flush_async()
        spans = await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 2)
        await asyncio.to_thread(tracing.shutdown)
    by_name = {s.name: s for s in spans}
    assert by_name["inner"].parent_span_id == by_name["outer"].span_id
    assert by_name["outer"].service == "eager" and by_name["outer"].attributes == {"k": "v"}
