"""The grpc.aio interceptors on a test service: unary, server-streaming and bidi calls each
give a CLIENT span and a SERVER span in one trace, and failures are marked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from layotto.tracing import Tracing, TracingSettings, backend_span


async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    if request == b"fail":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    with backend_span("redis", "GET", peer="127.0.0.1", port=6379):
        return request.upper()


async def server_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(3):
        yield request + str(i).encode()


async def bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request[::-1]


def identity(x: bytes) -> bytes:
    return x


HANDLERS = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary, identity, identity),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, identity, identity),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi, identity, identity),
}


@pytest.fixture
async def traced() -> AsyncIterator[tuple[grpc.aio.Channel, Tracing, InMemorySpanExporter]]:
    exported = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(service_name="test"), extra_exporters=(exported,))
    tracing.trace_backends()
    server = grpc.aio.server(interceptors=[tracing.server_interceptor()])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", HANDLERS),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target, interceptors=tracing.client_interceptors(target))
    yield channel, tracing, exported
    await channel.close()
    await server.stop(None)
    tracing.shutdown()


def pair(spans: tuple[ReadableSpan, ...], method: str) -> tuple[ReadableSpan, ReadableSpan]:
    client = next(s for s in spans if s.name == f"test.Echo/{method}" and s.kind is SpanKind.CLIENT)
    server = next(s for s in spans if s.name == f"test.Echo/{method}" and s.kind is SpanKind.SERVER)
    return client, server


def assert_linked(client: ReadableSpan, server: ReadableSpan) -> None:
    assert server.context.trace_id == client.context.trace_id, "one trace across the call"
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.parent.is_remote


async def test_unary_calls_and_their_backend_spans(traced: Any) -> None:
    channel, tracing, exported = traced
    assert await channel.unary_unary("/test.Echo/Unary")(b"hi") == b"HI"
    tracing.force_flush()
    spans = exported.get_finished_spans()
    client, server = pair(spans, "Unary")
    assert_linked(client, server)
    backend = next(s for s in spans if s.name == "redis GET")
    assert backend.parent is not None and backend.parent.span_id == server.context.span_id
    assert backend.attributes is not None and backend.attributes["db.system"] == "redis"
    assert backend.kind is SpanKind.CLIENT and backend.attributes["server.port"] == 6379
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == 0


async def test_failures_are_marked(traced: Any) -> None:
    channel, tracing, exported = traced
    with pytest.raises(grpc.aio.AioRpcError):
        await channel.unary_unary("/test.Echo/Unary")(b"fail")
    tracing.force_flush()
    client, server = pair(exported.get_finished_spans(), "Unary")
    for span in (client, server):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_server_streaming_is_traced_for_the_whole_stream(traced: Any) -> None:
    channel, tracing, exported = traced
    got = [r async for r in channel.unary_stream("/test.Echo/ServerStream")(b"n")]
    assert got == [b"n0", b"n1", b"n2"]
    await asyncio.sleep(0.1)  # a stream's client span ends once its status has been read
    tracing.force_flush()
    client, server = pair(exported.get_finished_spans(), "ServerStream")
    assert_linked(client, server)
    assert server.end_time is not None and client.end_time is not None


async def test_bidi_streaming_is_traced(traced: Any) -> None:
    channel, tracing, exported = traced

    async def requests() -> AsyncIterator[bytes]:
        for word in (b"abc", b"xyz"):
            yield word

    got = [r async for r in channel.stream_stream("/test.Echo/Bidi")(requests())]
    assert got == [b"cba", b"zyx"]
    await asyncio.sleep(0.1)
    tracing.force_flush()
    assert_linked(*pair(exported.get_finished_spans(), "Bidi"))


async def test_no_backend_span_outside_a_traced_request(traced: Any) -> None:
    _, tracing, exported = traced
    with backend_span("redis", "XREADGROUP"):
        pass
    tracing.force_flush()
    assert not [s for s in exported.get_finished_spans() if s.name == "redis XREADGROUP"]


async def test_methods_beyond_the_cache_are_traced_too(traced: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import layotto.tracing._grpc as interceptors

    monkeypatch.setattr(interceptors, "MAX_WRAPPED_METHODS", 1)  # a proxy serves any method name
    channel, tracing, exported = traced
    for _ in range(2):
        assert await channel.unary_unary("/test.Echo/Unary")(b"a") == b"A"
        assert await channel.stream_stream("/test.Echo/Bidi")(iter([b"ab"])).read() == b"ba"
    tracing.force_flush()
    spans = exported.get_finished_spans()
    for method in ("Unary", "Bidi"):
        servers = [s for s in spans if s.name == f"test.Echo/{method}" and s.kind is SpanKind.SERVER]
        assert len(servers) == 2, method


async def test_an_untraced_caller_starts_a_new_trace_at_the_server() -> None:
    exported = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(service_name="test"), extra_exporters=(exported,))
    tracing.trace_backends()
    server = grpc.aio.server(interceptors=[tracing.server_interceptor()])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", HANDLERS),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:  # no client interceptor
            assert await plain.unary_unary("/test.Echo/Unary")(b"a") == b"A"
            assert await plain.unary_unary("/test.Echo/Unary")(b"b") == b"B"
        tracing.force_flush()
    finally:
        await server.stop(None)
        tracing.shutdown()
    spans = exported.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(servers) == 2 and all(s.parent is None for s in servers), "root spans: no parent to continue"
    assert servers[0].context.trace_id != servers[1].context.trace_id, "a new trace per call"
    assert all(s.context.trace_flags.sampled for s in servers)
    assert all(s.attributes is not None and s.attributes["rpc.grpc.status_code"] == 0 for s in servers)
    backends = [s for s in spans if s.name == "redis GET"]
    assert {b.parent.span_id for b in backends if b.parent} == {s.context.span_id for s in servers}
