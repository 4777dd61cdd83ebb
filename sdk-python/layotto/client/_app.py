"""``SubscriberApp``: the app side of pub/sub delivery by callback.

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
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2

from layotto.client._pubsub import Message, TopicStatus, message_from_event, subscription_metadata
from layotto.proto.runtime.v1 import appcallback_pb2 as cb
from layotto.proto.runtime.v1 import appcallback_pb2_grpc

__all__ = ["Handler", "SubscriberApp"]

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[TopicStatus | None]]


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
    async def serve(self, address: str = "127.0.0.1:9999") -> AsyncIterator[int]:
        """Serve the callback on ``address`` (port 0: a free one) while the block runs; yields the port."""
        server = grpc.aio.server()
        appcallback_pb2_grpc.add_AppCallbackServicer_to_server(self, server)  # type: ignore[arg-type]
        port = server.add_insecure_port(address)
        await server.start()
        try:
            yield port
        finally:
            await server.stop(grace=1.0)
