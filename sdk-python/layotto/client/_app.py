"""``SubscriberApp``: the app side of pub/sub delivery by callback, and of service invocation.

::

    app = SubscriberApp()

    @app.subscribe("redis", "orders", dead_letter_topic="orders-dead")
    async def on_order(message: Message) -> None:
        ...  # returning acks; raising asks for redelivery

    async with app.serve("127.0.0.1:9999"):
        ...  # the runtime (app callback 127.0.0.1:9999) delivers to on_order

It serves Layotto's AppCallback (``spec.proto.runtime.v1.AppCallback``): the runtime
asks ListTopicSubscriptions and calls OnTopicEvent. A handler that returns None or
``TopicStatus.SUCCESS`` acks, one that returns ``TopicStatus.DROP`` drops, and one that
raises (or returns ``RETRY``) has the message delivered again with backoff.

Methods other apps invoke (``client.invoke(app_id, "greet", ...)``) are declared with
``@app.method("greet")``: the handler gets an :class:`Invocation` and returns the answer
(bytes, str, a JSON value, or an :class:`InvokeResponse` to set its content type and headers).
They are served as Dapr's ``AppCallback/OnInvoke`` (Layotto's AppCallback has no OnInvoke) on
the same server; an unknown method answers UNIMPLEMENTED, a handler that raises INTERNAL.

Input bindings arrive through Dapr's AppCallback (``dapr.proto.runtime.v1.AppCallback``:
ListInputBindings, OnBindingEvent), served on the same port::

    @app.binding("tick")
    async def on_tick(event: BindingEvent) -> BindingReply | None:
        ...  # returning acknowledges; raising tells the runtime the app did not take the event

Due jobs (``client.jobs.schedule``) arrive through Dapr's ``AppCallbackAlpha/OnJobEventAlpha1``
(and the stable ``AppCallback/OnJobEvent``), served on the same port::

    @app.job("nightly-report")
    async def report(event: JobEvent) -> None:
        ...  # returning acknowledges; raising fails the delivery (the job's failure policy decides)

A job without a handler answers UNIMPLEMENTED (a failed delivery, as with Dapr's SDKs).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf import empty_pb2

from layotto.client._bindings import BindingEvent, BindingHandler
from layotto.client._invoke import Invocation, InvokeResponse
from layotto.client._jobs import JobEvent, JobHandler
from layotto.client._pubsub import Message, TopicStatus, content_type_for, message_from_event, subscription_metadata
from layotto.client._transport import DEFAULT_MAX_MESSAGE_BYTES
from layotto.client._values import Value, encode
from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_cb
from layotto.proto.runtime.v1 import appcallback_pb2 as cb
from layotto.proto.runtime.v1 import appcallback_pb2_grpc

__all__ = ["Handler", "MethodHandler", "SubscriberApp"]

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[TopicStatus | None]]
MethodHandler = Callable[[Invocation], Awaitable[Value | InvokeResponse]]
DAPR_APP_CALLBACK = "dapr.proto.runtime.v1.AppCallback"
DAPR_APP_CALLBACK_ALPHA = "dapr.proto.runtime.v1.AppCallbackAlpha"
APP_API_TOKEN_ENV = "APP_API_TOKEN"
TOKEN_METADATA = "dapr-api-token"
VERBS = ("NONE", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


@dataclass(frozen=True)
class _Route:
    pubsub: str
    topic: str
    handler: Handler
    metadata: Mapping[str, str] = field(default_factory=dict)


class SubscriberApp:
    """Topic handlers, served to the runtime as an AppCallback server."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], _Route] = {}
        self._methods: dict[str, MethodHandler] = {}
        self._bindings: dict[str, BindingHandler] = {}
        self._jobs: dict[str, JobHandler] = {}

    def method(self, name: str) -> Callable[[MethodHandler], MethodHandler]:
        """Decorate an async function to answer invocations of method ``name``."""

        def register(handler: MethodHandler) -> MethodHandler:
            if name in self._methods:
                raise ValueError(f"method {name!r} already has a handler")
            self._methods[name] = handler
            return handler

        return register

    async def OnInvoke(self, request: common_pb2.InvokeRequest, context: Any) -> common_pb2.InvokeResponse:
        handler = self._methods.get(request.method)
        if handler is None:
            shown = (
                request.method if len(request.method) <= 200 else f"{request.method[:200]}..."
            )  # fits gRPC's headers
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"method {shown!r} is not served by this app")
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        extension = request.http_extension
        invocation = Invocation(
            method=request.method,
            data=bytes(request.data.value),
            content_type=request.content_type,
            verb=VERBS[extension.verb] if 0 <= extension.verb < len(VERBS) else "NONE",
            querystring=extension.querystring,
            headers=MappingProxyType(metadata),
            caller_app_id=metadata.get("dapr-caller-app-id", ""),
        )
        try:
            answer = await handler(invocation)  # type: ignore[misc]  # abort() above never returns
        except Exception:
            log.exception("method %s failed", request.method)
            await context.abort(grpc.StatusCode.INTERNAL, f"method {request.method!r} failed (logged by the app)")
        if isinstance(answer, InvokeResponse):
            await context.send_initial_metadata(tuple((k.lower(), v) for k, v in answer.headers.items()))
            data, content_type = answer.data, answer.content_type
        elif answer is None:
            data, content_type = b"", ""
        else:
            data, content_type = encode(answer), content_type_for(answer)
        response = common_pb2.InvokeResponse(content_type=content_type)
        response.data.value = data  # Dapr's messages live in their own pool: no Any of another's
        return response

    def _invoke_methods(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        on_invoke = grpc.unary_unary_rpc_method_handler(
            self.OnInvoke,
            request_deserializer=common_pb2.InvokeRequest.FromString,
            response_serializer=common_pb2.InvokeResponse.SerializeToString,
        )
        return {"OnInvoke": on_invoke}

    def binding(self, name: str) -> Callable[[BindingHandler], BindingHandler]:
        """Decorate an async function to handle the events of the input binding ``name``."""

        def register(handler: BindingHandler) -> BindingHandler:
            if name in self._bindings:
                raise ValueError(f"binding {name!r} already has a handler")
            self._bindings[name] = handler
            return handler

        return register

    def job(self, name: str) -> Callable[[JobHandler], JobHandler]:
        """Decorate an async function to handle the due occurrences of the job ``name``."""

        def register(handler: JobHandler) -> JobHandler:
            if name in self._jobs:
                raise ValueError(f"job {name!r} already has a handler")
            self._jobs[name] = handler
            return handler

        return register

    def subscribe(
        self,
        pubsub: str,
        topic: str,
        *,
        metadata: Mapping[str, str] | None = None,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorate an async function to handle ``topic`` of ``pubsub``."""
        meta = subscription_metadata(metadata, max_delivery_attempts)
        if dead_letter_topic:
            meta["deadLetterTopic"] = dead_letter_topic

        def register(handler: Handler) -> Handler:
            if (pubsub, topic) in self._routes:
                raise ValueError(f"{pubsub}/{topic} already has a handler")
            self._routes[(pubsub, topic)] = _Route(pubsub, topic, handler, meta)
            return handler

        return register

    async def ListTopicSubscriptions(self, request: empty_pb2.Empty, context: Any) -> cb.ListTopicSubscriptionsResponse:
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[
                cb.TopicSubscription(pubsub_name=r.pubsub, topic=r.topic, metadata=dict(r.metadata))
                for r in self._routes.values()
            ]
        )

    async def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> cb.TopicEventResponse:
        route = self._routes.get((request.pubsub_name, request.topic))
        if route is None:
            log.warning("no handler for %s/%s: dropping %s", request.pubsub_name, request.topic, request.id)
            return cb.TopicEventResponse(status=cb.TopicEventResponse.DROP)
        try:
            status = await route.handler(message_from_event(request))
        except Exception:
            log.exception("handler of %s/%s failed on %s: asking for redelivery", route.pubsub, route.topic, request.id)
            status = TopicStatus.RETRY
        answer = TopicStatus(status) if status is not None else TopicStatus.SUCCESS
        return answer.to_response()

    @asynccontextmanager
    async def serve(
        self, address: str = "127.0.0.1:9999", *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> AsyncIterator[int]:
        """Serve the callback on ``address`` (port 0: a free one) while the block runs; yields the port.
        ``max_message_bytes`` bounds a request or answer (the runtime's default, 16 MiB). When
        ``APP_API_TOKEN`` is set, a call without it as ``dapr-api-token`` metadata is answered
        UNAUTHENTICATED (the runtime sends it when it has the same variable)."""
        limits = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        token = os.environ.get(APP_API_TOKEN_ENV, "")
        server = grpc.aio.server(options=limits, interceptors=[_TokenCheck(token)] if token else None)
        appcallback_pb2_grpc.add_AppCallbackServicer_to_server(self, server)  # type: ignore[arg-type]
        jobs = _DaprJobCallback(self._jobs)
        dapr_methods = {
            **self._invoke_methods(),
            **_DaprBindingCallback(self._bindings).methods(),
            "OnJobEvent": jobs.method(),
        }
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(DAPR_APP_CALLBACK, dapr_methods),
                grpc.method_handlers_generic_handler(DAPR_APP_CALLBACK_ALPHA, {"OnJobEventAlpha1": jobs.method()}),
            ]
        )
        port = server.add_insecure_port(address)
        await server.start()
        try:
            yield port
        finally:
            await server.stop(grace=1.0)


class _TokenCheck(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Answers UNAUTHENTICATED to a callback without ``dapr-api-token: token`` (constant-time compare)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        presented = dict(handler_call_details.invocation_metadata or ()).get(TOKEN_METADATA, "")
        given = presented.encode() if isinstance(presented, str) else presented
        if handler is None or hmac.compare_digest(self._token, given):
            return handler

        async def refuse(request: Any, context: Any) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong dapr-api-token metadata")

        return grpc.unary_unary_rpc_method_handler(refuse)  # every AppCallback RPC is unary


class _DaprBindingCallback:
    """Dapr's AppCallback for input bindings; its other RPCs answer UNIMPLEMENTED."""

    def __init__(self, handlers: Mapping[str, BindingHandler]) -> None:
        self._handlers = handlers

    def methods(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        return {
            "ListInputBindings": grpc.unary_unary_rpc_method_handler(
                self.ListInputBindings,
                request_deserializer=empty_pb2.Empty.FromString,
                response_serializer=dapr_cb.ListInputBindingsResponse.SerializeToString,
            ),
            "OnBindingEvent": grpc.unary_unary_rpc_method_handler(
                self.OnBindingEvent,
                request_deserializer=dapr_cb.BindingEventRequest.FromString,
                response_serializer=dapr_cb.BindingEventResponse.SerializeToString,
            ),
        }

    async def ListInputBindings(self, request: empty_pb2.Empty, context: Any) -> dapr_cb.ListInputBindingsResponse:
        return dapr_cb.ListInputBindingsResponse(bindings=sorted(self._handlers))

    async def OnBindingEvent(self, request: dapr_cb.BindingEventRequest, context: Any) -> dapr_cb.BindingEventResponse:
        handler = self._handlers.get(request.name)
        if handler is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"name: no handler for binding {request.name!r}")
        event = BindingEvent(name=request.name, data=request.data, metadata=dict(request.metadata))
        try:
            reply = await handler(event)  # type: ignore[misc]
        except Exception as error:
            log.exception("handler of binding %s failed", request.name)
            await context.abort(grpc.StatusCode.INTERNAL, f"handler of binding {request.name!r} failed: {error}")
        if reply is None:
            return dapr_cb.BindingEventResponse()
        concurrency = (
            dapr_cb.BindingEventResponse.PARALLEL if reply.parallel else dapr_cb.BindingEventResponse.SEQUENTIAL
        )
        states = [common_pb2.StateItem(key=key, value=value) for key, value in reply.states.items()]
        return dapr_cb.BindingEventResponse(
            to=list(reply.to), data=reply.data, concurrency=concurrency, store_name=reply.state_store, states=states
        )


class _DaprJobCallback:
    """Dapr's OnJobEvent (and OnJobEventAlpha1): a due job to its handler."""

    def __init__(self, handlers: Mapping[str, JobHandler]) -> None:
        self._handlers = handlers

    def method(self) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            self.OnJobEvent,
            request_deserializer=dapr_cb.JobEventRequest.FromString,
            response_serializer=dapr_cb.JobEventResponse.SerializeToString,
        )

    async def OnJobEvent(self, request: dapr_cb.JobEventRequest, context: Any) -> dapr_cb.JobEventResponse:
        handler = self._handlers.get(request.name)
        if handler is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"name: no handler for job {request.name!r}")
        try:
            await handler(JobEvent(name=request.name, data=bytes(request.data.value)))  # type: ignore[misc]
        except Exception as error:
            log.exception("handler of job %s failed", request.name)
            await context.abort(grpc.StatusCode.INTERNAL, f"handler of job {request.name!r} failed: {error}")
        return dapr_cb.JobEventResponse()
