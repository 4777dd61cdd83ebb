"""Graceful shutdown of the gRPC server without CANCELLED calls.

grpc's ``server.stop(grace)`` lets handlers that already run finish, but a call the
server received and had not yet handed to a handler (queued in grpc core, waiting for
the event loop) is cancelled on the spot: a burst of concurrent calls followed by
SIGTERM answered most of them CANCELLED, which clients do not retry.

:class:`ShutdownGate` is a server interceptor that closes that gap. Once
:meth:`ShutdownGate.drain` begins, every call that reaches a handler is answered
UNAVAILABLE with reason ``RUNTIME_SHUTTING_DOWN`` (safe to retry: nothing was done) while
the calls already in a handler finish. The drain ends when no unary call is in a handler
and no call has arrived for :data:`QUIET_SECONDS` (grpc core's queue is empty), or when
the grace period ends; only then is the server stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from layotto.server.api.status import to_status
from layotto.server.errors import LayottoError, RuntimeShuttingDown

#: how long no call may arrive before the queue of received calls is taken to be empty
QUIET_SECONDS = 0.2
_POLL_SECONDS = 0.02
#: served while draining: health checks report NOT_SERVING, which is what a caller wants to know
_ALWAYS_SERVED = ("/grpc.health.v1.Health/",)


def refusing_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    error: LayottoError,
    extra_trailers: tuple[tuple[str, str], ...] = (),
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of ``handler``'s kind (unary or streaming) that answers ``error``'s status, reason and
    details (then ``extra_trailers``) without reading the request (no deserializer: an undecodable
    request changes nothing)."""
    code, message, details = to_status(error)
    trailers: tuple[tuple[str, str | bytes], ...] = (*details, *extra_trailers)

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message, trailing_metadata=trailers)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class ShutdownGate(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts the unary calls in a handler; refuses new calls while draining (see the module)."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0  # unary calls inside a handler
        self._last_arrival = time.monotonic()
        self._wrapped = WrapperCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # a handler, or None for an unknown method
        self._last_arrival = time.monotonic()
        return self._picked(handler_call_details.method, await continuation(handler_call_details))

    def pick(self, method: str, handler: Any) -> Any:
        """What :meth:`intercept_service` returns when its continuation gives ``handler`` (None for
        an unknown method), without the call's details: the native server calls this instead."""
        self._last_arrival = time.monotonic()
        return self._picked(method, handler)

    def _picked(self, method: str, handler: Any) -> Any:
        if handler is None:
            return None
        if self.draining:
            refused = self.refusal(method, handler)
            if refused is not None:
                return refused
        return self._wrapped.get(method, handler, self._counted)

    def arrived(self) -> None:
        """Note a call's arrival (what :meth:`intercept_service` does first), for an interceptor doing
        the gate's work in its own wrapper (:class:`~layotto.server.metrics.RpcMetrics`)."""
        self._last_arrival = time.monotonic()

    def refusal(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any] | None:
        """While draining, the handler refusing a call of ``method`` (health checks excepted); else None."""
        if self.draining and not method.startswith(_ALWAYS_SERVED):
            return refusing_handler(handler, RuntimeShuttingDown(method.lstrip("/")))
        return None

    async def drain(self, grace: float) -> None:
        """Refuse new calls; return once the calls in handlers are done, or after ``grace`` seconds."""
        self.draining = True
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.in_flight == 0 and time.monotonic() - self._last_arrival >= QUIET_SECONDS:
                return
            await asyncio.sleep(_POLL_SECONDS)

    def _counted(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        codecs = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._counting(handler.unary_unary), *codecs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._counting(handler.stream_unary), *codecs)
        return handler  # streams run until the grace period ends, as before

    def _counting(self, behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
        async def counted(request: Any, context: Any) -> Any:
            self.in_flight += 1
            try:
                return await behavior(request, context)
            finally:
                self.in_flight -= 1

        return counted


class WrapperCache:
    """The wrapper an interceptor made of a method's handler, kept while the handler it wrapped is the
    same object (the handlers of a method are built once; an interceptor that builds one per call
    defeats the cache, never correctness). At most ``limit`` methods: a proxy may serve any name."""

    def __init__(self, limit: int = 512) -> None:
        self._limit = limit
        self._kept: dict[str, tuple[Any, Any]] = {}

    def get(self, method: str, handler: Any, wrap: Callable[[str, Any], Any]) -> Any:
        """``wrap(method, handler)``, made once per method and handler."""
        kept = self._kept.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = wrap(method, handler)
        if kept is not None or len(self._kept) < self._limit:
            self._kept[method] = (handler, wrapped)
        return wrapped
