"""Binds a service's routing table (RPC name -> async handler) to gRPC method handlers.

Every RPC of the service descriptor is served: those the table leaves out answer
UNIMPLEMENTED (reason ``RPC_NOT_IMPLEMENTED``) naming the RPC. A table entry naming no RPC
of the service, or a handler of the wrong shape (a coroutine function for a unary response,
an async generator function for a streamed one), is refused when the handlers are built,
that is at start-up.

This is also the boundary where bytes become messages and errors become statuses:

* gRPC hands the handler the raw request bytes (no deserializer); the adapter decodes them,
  and each message of a request stream as it is read. Bytes that are not the RPC's message
  answer INVALID_ARGUMENT (reason ``MALFORMED_REQUEST``) naming the message type, logged
  in one DEBUG line.
* A :class:`~layotto.server.errors.LayottoError` becomes its status
  (:mod:`layotto.server.api.status`); anything else becomes INTERNAL, logged, never a crash.
* A response (or a message of a response stream) over ``max_response_bytes`` is not sent: the
  call answers RESOURCE_EXHAUSTED (reason ``PAYLOAD_TOO_LARGE``) naming the response field that
  takes the most room, instead of gRPC's own failure to send it (no reason, a logged traceback).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeAlias

import grpc
from google.protobuf import descriptor as _d
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from layotto.server.api.status import to_status
from layotto.server.errors import LayottoError, MalformedRequest, NotImplementedRpc, ResponseTooLarge

log = logging.getLogger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = Callable[..., Any]
Routes: TypeAlias = Mapping[str, Handler]
"""A service's routing table: RPC name -> the async handler serving it."""
MethodHandlers: TypeAlias = "dict[str, grpc.RpcMethodHandler[Any, Any]]"
"""RPC name -> its gRPC method handler, for one service."""
Decode: TypeAlias = Callable[[bytes], Any]


class RoutingError(ValueError):
    """A routing table does not fit its service: an unknown RPC name or a handler of the wrong shape."""


async def abort_with(context: Context, error: LayottoError) -> None:
    """Ends the call with the error's status, message and ErrorInfo detail (raises grpc.aio.AbortError)."""
    code, message, trailers = to_status(error)
    await context.abort(code, message, trailing_metadata=trailers)


async def _abort_internal(context: Context, method: str) -> None:
    log.exception("unexpected error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, f"{method}: internal error in the runtime (logged)")


def decoder(method: _d.MethodDescriptor) -> Decode:
    """Bytes -> the RPC's request message; raises MalformedRequest naming the message type."""
    message_class = message_factory.GetMessageClass(method.input_type)
    message_type = method.input_type.full_name

    def decode(raw: bytes) -> Any:
        try:
            return message_class.FromString(raw)
        except DecodeError as error:
            raise MalformedRequest(message_type, str(error) or "undecodable") from None

    return decode


class DecodedRequests:
    """A request stream read as messages. The first undecodable message raises MalformedRequest
    (again on every later read) and stays in ``malformed``, so the call reports it even when a
    handler's background reader swallowed it."""

    def __init__(self, raw: AsyncIterator[bytes], decode: Decode) -> None:
        self._raw = raw
        self._decode = decode
        self.malformed: MalformedRequest | None = None

    def __aiter__(self) -> DecodedRequests:
        return self

    async def __anext__(self) -> Any:
        if self.malformed is not None:
            raise self.malformed
        raw = await anext(self._raw)
        try:
            return self._decode(raw)
        except MalformedRequest as error:
            self.malformed = error
            raise


class _Call:
    """One call's request, decoded here so that a decoding error is the call's status."""

    def __init__(self, method: _d.MethodDescriptor, decode: Decode, raw: Any) -> None:
        self._stream = DecodedRequests(raw, decode) if method.client_streaming else None
        self._decode = decode
        self._raw = raw

    def request(self) -> Any:
        return self._stream if self._stream is not None else self._decode(self._raw)

    @property
    def malformed(self) -> MalformedRequest | None:
        """The undecodable message of the request stream, when the handler read one."""
        return self._stream.malformed if self._stream is not None else None


async def _fail(context: Context, full: str, error: LayottoError) -> None:
    if isinstance(error, MalformedRequest):
        log.debug("%s: %s", full, error.message)
    await abort_with(context, error)


def largest_field(response: Message) -> str:
    """The name of the field of ``response`` that takes the most bytes ("response" when it has none)."""
    sizes: dict[str, int] = {}
    total = response.ByteSize()
    for descriptor, _ in response.ListFields():
        without = type(response)()
        without.CopyFrom(response)
        without.ClearField(descriptor.name)
        sizes[descriptor.name] = total - without.ByteSize()
    return max(sizes, key=sizes.__getitem__) if sizes else "response"


def check_response_size(response: Any, limit: int | None) -> None:
    """Raise ResponseTooLarge when ``response`` serializes to more than ``limit`` bytes."""
    if limit is None or not isinstance(response, Message):
        return
    size = response.ByteSize()
    if size > limit:
        raise ResponseTooLarge(largest_field(response), size, limit)


def _unary_unary(full: str, decode: Decode, impl: Handler, limit: int | None) -> Handler:
    """A unary request and answer: :func:`_unary_response` without the request stream's bookkeeping."""

    async def handle(raw: bytes, context: Context) -> Any:
        try:
            response = await impl(decode(raw), context)
            if limit is not None:
                check_response_size(response, limit)
        except grpc.aio.AbortError:
            raise
        except LayottoError as error:
            await _fail(context, full, error)
            raise
        except Exception:
            await _abort_internal(context, full)
            raise
        return response

    return handle


def _unary_response(full: str, method: _d.MethodDescriptor, impl: Handler, limit: int | None) -> Handler:
    decode = decoder(method)
    if not method.client_streaming:
        return _unary_unary(full, decode, impl, limit)

    async def handle(raw: Any, context: Context) -> Any:
        call = _Call(method, decode, raw)
        try:
            response = await impl(call.request(), context)
            check_response_size(response, limit)
        except grpc.aio.AbortError:
            raise
        except LayottoError as error:
            await _fail(context, full, call.malformed or error)  # a malformed message wins over its effects
            raise
        except Exception:
            await _abort_internal(context, full)
            raise
        if call.malformed is not None:  # the handler read past it (a background reader)
            await _fail(context, full, call.malformed)
        return response

    return handle


def _streamed_response(full: str, method: _d.MethodDescriptor, impl: Handler, limit: int | None) -> Handler:
    decode = decoder(method)

    async def handle(raw: Any, context: Context) -> AsyncIterator[Any]:
        call = _Call(method, decode, raw)
        try:
            async for item in impl(call.request(), context):
                check_response_size(item, limit)
                yield item
        except grpc.aio.AbortError:
            raise
        except LayottoError as error:
            await _fail(context, full, call.malformed or error)
            raise
        except Exception:
            await _abort_internal(context, full)
            raise
        if call.malformed is not None:
            await _fail(context, full, call.malformed)

    return handle


def _unimplemented(full: str, server_streaming: bool) -> Handler:
    """Answers UNIMPLEMENTED naming the RPC, without reading the request."""
    if server_streaming:

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await abort_with(context, NotImplementedRpc(full))
            yield  # pragma: no cover - abort raises

        return stream

    async def unary(request: Any, context: Context) -> Any:
        await abort_with(context, NotImplementedRpc(full))

    return unary


def check_routes(service: _d.ServiceDescriptor, routes: Routes) -> None:
    """Raises RoutingError unless every entry names an RPC of ``service`` with a handler of its shape."""
    methods = {method.name: method for method in service.methods}
    unknown = sorted(set(routes) - set(methods))
    if unknown:
        raise RoutingError(f"{service.full_name} has no RPC named {', '.join(unknown)}")
    for name, handler in routes.items():
        streamed = methods[name].server_streaming
        fits = inspect.isasyncgenfunction(handler) if streamed else inspect.iscoroutinefunction(handler)
        if not fits:
            shape = "an async generator function" if streamed else "a coroutine function"
            raise RoutingError(f"{service.full_name}/{name}: the handler {handler!r} is not {shape}")


_METHOD_HANDLER_KINDS: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def method_handlers(
    service: _d.ServiceDescriptor, routes: Routes, max_response_bytes: int | None = None
) -> MethodHandlers:
    """RPC name -> its gRPC method handler, for every RPC of ``service`` (RoutingError: see check_routes).

    Requests arrive as bytes (no deserializer) and are decoded by the handler; responses are
    serialized by gRPC. A response over ``max_response_bytes`` (None: no check) answers
    RESOURCE_EXHAUSTED (PAYLOAD_TOO_LARGE) instead.
    """
    check_routes(service, routes)
    handlers: MethodHandlers = {}
    for method in service.methods:
        full = f"{service.full_name}/{method.name}"
        impl = routes.get(method.name)
        if impl is None:
            behaviour = _unimplemented(full, method.server_streaming)
        elif method.server_streaming:
            behaviour = _streamed_response(full, method, impl, max_response_bytes)
        else:
            behaviour = _unary_response(full, method, impl, max_response_bytes)
        response_class = message_factory.GetMessageClass(method.output_type)
        kind = _METHOD_HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            behaviour, request_deserializer=None, response_serializer=response_class.SerializeToString
        )
    return handlers


def service_handler(
    service: _d.ServiceDescriptor, routes: Routes, max_response_bytes: int | None = None
) -> grpc.GenericRpcHandler[Any, Any]:
    """The same handlers as :func:`method_handlers`, as one generic handler of the service."""
    return grpc.method_handlers_generic_handler(service.full_name, method_handlers(service, routes, max_response_bytes))


# -- client streams of bytes (PutFile, PutObject, UploadPart, AppendObject) -------------------

#: how long the end of a client stream waits for a cancel behind it before the store commits (measured:
#: under 1 ms, on a loaded machine). grpc.aio serves client streams on either transport (pygrpc-native's
#: front hands them to its grpc.aio fallback server) and reports a client's cancel as the end of the
#: request stream first and the cancel moments later.
CANCEL_GRACE_SECONDS = 0.05


async def stream_data(
    first: Any, rest: AsyncIterator[Any], context: Context, attribute: str = "data"
) -> AsyncIterator[bytes]:
    """The bytes of ``attribute`` of a client stream's messages (``first`` already read); its end
    raises CancelledError when the client cancelled, so the store drops what it received. A client's
    cancel reaches the handler as the end of the stream followed by the cancel (grpc.aio, directly or
    behind pygrpc-native's front), hence the grace before deciding."""
    if data := getattr(first, attribute):  # each read of a bytes field copies it out of the message: read once
        yield data
    async for message in rest:
        if data := getattr(message, attribute):
            yield data
    await asyncio.sleep(CANCEL_GRACE_SECONDS)  # a cancel arriving meanwhile cancels this task
    if context.cancelled():
        raise asyncio.CancelledError
