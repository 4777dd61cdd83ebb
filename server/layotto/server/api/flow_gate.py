"""Flow control of gRPC methods: a server interceptor that refuses a call of a limited method
once its bucket is empty (RESOURCE_EXHAUSTED, reason RATE_LIMITED, ``retry_after_seconds`` in
the ErrorInfo metadata and a ``retry-after`` trailer); the buckets are
:class:`~layotto.server.runtime.flow_control.FlowControl`'s."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from layotto.server.errors import RateLimited
from layotto.server.runtime.flow_control import FlowControl
from layotto.server.shutdown_gate import refusing_handler


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
            retry_after = ("retry-after", str(max(1, math.ceil(error.retry_after))))
            return refusing_handler(handler, error, (retry_after,))
        return handler
