"""Flow control of gRPC methods: a server interceptor that refuses a call of a limited method
once its bucket is empty (RESOURCE_EXHAUSTED, reason RATE_LIMITED, ``retry_after_seconds`` in
the ErrorInfo metadata and a ``retry-after`` trailer); the buckets are
:class:`~layotto.server.runtime.flow_control.FlowControl`'s."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from layotto.server.api.status import to_status
from layotto.server.errors import RateLimited
from layotto.server.runtime.flow_control import FlowControl


def _refusal(error: RateLimited) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]:
    code, message, details = to_status(error)
    trailers: tuple[tuple[str, str | bytes], ...] = (
        *details,
        ("retry-after", str(max(1, math.ceil(error.retry_after)))),
    )

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message, trailing_metadata=trailers)

    return refuse


class FlowGate(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Takes a token of the called method's bucket per call; refuses the call when there is none."""

    def __init__(self, flow: FlowControl) -> None:
        self._flow = flow

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # a handler, or None for an unknown method
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self._flow.limits_method(method):
            return handler
        try:
            self._flow.admit_method(method)
        except RateLimited as error:
            refuse = _refusal(error)  # no deserializer: the refused request is not read
            if handler.request_streaming and handler.response_streaming:
                return grpc.stream_stream_rpc_method_handler(refuse)
            if handler.request_streaming:
                return grpc.stream_unary_rpc_method_handler(refuse)
            if handler.response_streaming:
                return grpc.unary_stream_rpc_method_handler(refuse)
            return grpc.unary_unary_rpc_method_handler(refuse)
        return handler
