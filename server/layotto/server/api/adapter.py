"""Turns a service descriptor plus an object of async handlers into a gRPC handler.

Handlers are looked up by RPC name. Every RPC of the descriptor is served: those
without a handler answer UNIMPLEMENTED with a message naming the RPC. This is also
the one boundary where errors become gRPC statuses: a :class:`LayottoError` becomes
its catalogued status, anything else becomes INTERNAL (logged, never a crash).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor as _d
from google.protobuf import message_factory

from layotto.server.errors import LayottoError, NotImplementedRpc, to_status

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


async def abort_with(context: Context, error: LayottoError) -> None:
    code, message, trailers = to_status(error)
    await context.abort(code, message, trailing_metadata=trailers)


async def _abort_internal(context: Context, method: str) -> None:
    log.exception("unexpected error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, f"{method}: internal error in the runtime (logged)")


def _wrap_unary(method: str, fn: Callable[[Any, Context], Awaitable[Any]]) -> Callable[[Any, Context], Awaitable[Any]]:
    async def handle(request: Any, context: Context) -> Any:
        try:
            return await fn(request, context)
        except LayottoError as error:
            await abort_with(context, error)
        except Exception:
            await _abort_internal(context, method)

    return handle


def _wrap_streaming(
    method: str, fn: Callable[[Any, Context], AsyncIterator[Any]]
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            async for item in fn(request, context):
                yield item
        except LayottoError as error:
            await abort_with(context, error)
        except Exception:
            await _abort_internal(context, method)

    return handle


def _unimplemented(method: str, server_streaming: bool) -> Any:
    if server_streaming:

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await abort_with(context, NotImplementedRpc(method))
            yield  # pragma: no cover - abort raises

        return stream

    async def unary(request: Any, context: Context) -> Any:
        await abort_with(context, NotImplementedRpc(method))

    return unary


def rpc_methods(*apis: object) -> dict[str, Callable[..., Any]]:
    """The handlers of API objects: their public methods named like RPCs (CamelCase)."""
    found: dict[str, Callable[..., Any]] = {}
    for api in apis:
        for name in dir(api):
            if name[:1].isupper() and callable(getattr(api, name)):
                found[name] = getattr(api, name)
    return found


def service_handler(
    service: _d.ServiceDescriptor, handlers_by_rpc: dict[str, Callable[..., Any]]
) -> grpc.GenericRpcHandler[Any, Any]:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        full = f"{service.full_name}/{method.name}"
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        impl = handlers_by_rpc.get(method.name)
        if impl is None:
            behaviour = _unimplemented(full, method.server_streaming)
        elif method.server_streaming:
            behaviour = _wrap_streaming(full, impl)
        else:
            behaviour = _wrap_unary(full, impl)
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            behaviour,
            request_deserializer=request_cls.FromString,
            response_serializer=response_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
