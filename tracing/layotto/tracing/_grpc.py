"""Explicit grpc.aio interceptors: a CLIENT span per outgoing call carrying ``traceparent``
and ``sw8``, and a SERVER span per incoming call continuing the caller's trace. Streaming
calls are traced for their whole life."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from layotto.tracing._sw8 import PEER, decode_header

UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
#: methods whose wrapped handler is kept; the handlers of further methods are wrapped per call
MAX_WRAPPED_METHODS = 512
_CODE_NUMBERS = {code: code.value[0] for code in grpc.StatusCode}
_NO_PARENT = otel_context.Context()
_CARRIED = frozenset({"traceparent", "tracestate", "sw8"})  # the metadata propagation reads


def rpc_attributes(method: str) -> dict[str, Any]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _peer_attributes(target: str) -> dict[str, Any]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return {PEER: target}
    return {PEER: host.split("///")[-1].strip("[]"), "server.port": int(port)}


def _set_code(span: trace.Span, code: grpc.StatusCode) -> None:
    if code is grpc.StatusCode.OK:  # most calls: no enum hashing, no status
        span.set_attribute("rpc.grpc.status_code", 0)
        return
    span.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS[code])
    span.set_status(Status(StatusCode.ERROR, code.name))


class _ClientInterceptor:
    def __init__(self, tracer: Tracer, propagator: TextMapPropagator, target: str) -> None:
        self._tracer = tracer
        self._propagator = propagator
        self._peer = _peer_attributes(target)

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        span = self._tracer.start_span(
            method.lstrip("/"), kind=SpanKind.CLIENT, attributes={**rpc_attributes(method), **self._peer}
        )
        metadata = list(details.metadata or [])
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        metadata.extend(carrier.items())
        traced = grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
        )
        return span, traced

    @staticmethod
    def _end_when_done(call: Any, span: trace.Span) -> None:
        def done(finished: Any) -> None:
            task = asyncio.ensure_future(finished.code())
            task.add_done_callback(lambda t: _finish(span, t))

        call.add_done_callback(done)

    async def _call(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, request: Any, *, unary_response: bool
    ) -> Any:
        span, traced = self._start(details)
        try:
            call = await continuation(traced, request)
        except BaseException as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
            raise
        if not unary_response:
            self._end_when_done(call, span)  # a stream: the span lasts until it ends
            return call
        try:
            await call  # the caller awaits the same call next and gets the cached outcome
        except grpc.aio.AioRpcError as error:
            _set_code(span, error.code())
        except BaseException:
            span.set_status(Status(StatusCode.ERROR))
        else:
            _set_code(span, grpc.StatusCode.OK)
        finally:
            span.end()
        return call


def _finish(span: trace.Span, task: asyncio.Future[grpc.StatusCode]) -> None:
    if not task.cancelled() and task.exception() is None:
        _set_code(span, task.result())
    span.end()


class ClientUnaryUnary(_ClientInterceptor, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request, unary_response=True)


class ClientUnaryStream(_ClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request, unary_response=False)


class ClientStreamUnary(_ClientInterceptor, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, client_call_details, request_iterator, unary_response=True)


class ClientStreamStream(_ClientInterceptor, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, client_call_details, request_iterator, unary_response=False)


def client_interceptors(tracer: Tracer, propagator: TextMapPropagator, target: str) -> list[Any]:
    """One interceptor per call shape, for ``grpc.aio.insecure_channel(..., interceptors=...)``."""
    return [
        cls(tracer, propagator, target)
        for cls in (ClientUnaryUnary, ClientUnaryStream, ClientStreamUnary, ClientStreamStream)
    ]


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """A SERVER span around every call, child of the caller's span when it sent one.

    Each method's handler is wrapped once; the caller's context is read per call from the
    call's metadata.
    """

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator) -> None:
        self._tracer = tracer
        self._propagator = propagator
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(UNTRACED_PREFIXES):
            return handler
        wrapped = self._wrap(handler, _SpanStarter(self._tracer, self._propagator, method))
        if len(self._wrapped) < MAX_WRAPPED_METHODS:  # a proxy may serve any method name: the cache stays bounded
            self._wrapped[method] = wrapped
        return wrapped

    @staticmethod
    def _wrap(handler: Any, starter: _SpanStarter) -> Any:
        codecs = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, starter), *codecs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream, starter), *codecs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, starter), *codecs)
        return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream, starter), *codecs)


class _SpanStarter:
    """Starts the SERVER span of one method's calls, continuing the caller's trace."""

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator, method: str) -> None:
        self.tracer = tracer
        self.propagator = propagator
        self.name = method.lstrip("/")
        self.attributes = rpc_attributes(method)
        # the lean tracer's shortcut for a span without a parent (another tracer: start_span)
        self.start_root: Callable[[str, SpanKind, dict[str, Any]], trace.Span] | None = getattr(
            tracer, "start_root_span", None
        )

    def start(self, context: Any) -> trace.Span:
        carried = {key: value for key, value in context.invocation_metadata() or () if key in _CARRIED}
        if not carried:  # an untraced caller: a new trace (a server span's parent is only ever remote)
            if self.start_root is not None:
                return self.start_root(self.name, SpanKind.SERVER, self.attributes)
            return self.tracer.start_span(self.name, _NO_PARENT, SpanKind.SERVER, self.attributes)
        attributes = self.attributes
        raw_sw8 = carried.get("sw8")
        if isinstance(raw_sw8, str):
            sw8 = decode_header([raw_sw8])
            if sw8 is not None:
                attributes = {**attributes, **sw8.reference_attributes()}
        parent = self.propagator.extract(carried)
        return self.tracer.start_span(self.name, context=parent, kind=SpanKind.SERVER, attributes=attributes)


def _unary(behavior: Any, starter: _SpanStarter) -> Any:
    async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        span = starter.start(context)
        token = otel_context.attach(trace.set_span_in_context(span))
        code = grpc.StatusCode.UNKNOWN
        try:
            response = await behavior(request, context)
            code = grpc.StatusCode.OK
            return response
        finally:
            _set_code(span, _code(context, code))
            span.end()
            otel_context.detach(token)

    return traced


def _streaming(behavior: Any, starter: _SpanStarter) -> Any:
    async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        span = starter.start(context)
        token = otel_context.attach(trace.set_span_in_context(span))
        code = grpc.StatusCode.OK
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            _set_code(span, _code(context, code))
            span.end()
            with contextlib.suppress(ValueError):  # the generator was closed from another context
                otel_context.detach(token)

    return traced


def _code(context: Any, fallback: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()  # what the handler set or aborted with; None when it just returned
    return code if isinstance(code, grpc.StatusCode) else fallback
