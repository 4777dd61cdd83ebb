"""A pluggable pub/sub broker written in Python: Dapr's ``dapr.proto.components.v1.PubSub`` over
in-memory topics, served with gRPC reflection on a Unix socket. Every PullMessages stream of a topic
gets its messages; a message answered with ``ack_error`` is offered again, one never answered stays
pending."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from layotto.proto.components.v1 import common_pb2, pubsub_pb2, pubsub_pb2_grpc

PUBSUB = pubsub_pb2.DESCRIPTOR.services_by_name["PubSub"].full_name


class MemoryPubSubComponent(pubsub_pb2_grpc.PubSubServicer):
    def __init__(self, features: Sequence[str] = ()) -> None:
        self.features = list(features)
        self.inits: list[tuple[dict[str, str], str]] = []  # (metadata properties, x-component-instance)
        self.published: list[pubsub_pb2.PublishRequest] = []
        self.subscriptions: list[tuple[str, dict[str, str]]] = []  # (topic, its metadata) per stream
        self.acks: list[str] = []
        self.ack_errors: list[tuple[str, str]] = []
        self._queues: dict[str, list[asyncio.Queue[pubsub_pb2.PullMessagesResponse]]] = {}
        self._backlog: dict[str, list[pubsub_pb2.PullMessagesResponse]] = {}
        self._ids = itertools.count(1)

    async def Init(self, request: Any, context: Any) -> Any:
        instance = dict(context.invocation_metadata()).get("x-component-instance", "")
        self.inits.append((dict(request.metadata.properties), instance))
        return pubsub_pb2.PubSubInitResponse()

    async def Features(self, request: Any, context: Any) -> Any:
        return common_pb2.FeaturesResponse(features=self.features)

    async def Ping(self, request: Any, context: Any) -> Any:
        return common_pb2.PingResponse()

    async def Publish(self, request: Any, context: Any) -> Any:
        self.published.append(request)
        message = pubsub_pb2.PullMessagesResponse(
            data=request.data, topic_name=request.topic, metadata=request.metadata, id=f"m{next(self._ids)}"
        )
        queues = self._queues.get(request.topic)
        if queues:
            for queue in queues:
                queue.put_nowait(message)
        else:
            self._backlog.setdefault(request.topic, []).append(message)
        return pubsub_pb2.PublishResponse()

    async def BulkPublish(self, request: Any, context: Any) -> Any:
        for entry in request.entries:
            single = pubsub_pb2.PublishRequest(
                data=entry.event, pubsub_name=request.pubsub_name, topic=request.topic, metadata=entry.metadata
            )
            await self.Publish(single, context)
        return pubsub_pb2.BulkPublishResponse()

    async def Pause(self, request: Any, context: Any) -> Any:
        return pubsub_pb2.PauseResponse()

    async def Resume(self, request: Any, context: Any) -> Any:
        return pubsub_pb2.ResumeResponse()

    async def PullMessages(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        first = await anext(requests)
        topic = first.topic.name
        self.subscriptions.append((topic, dict(first.topic.metadata)))
        queue: asyncio.Queue[pubsub_pb2.PullMessagesResponse] = asyncio.Queue()
        for message in self._backlog.pop(topic, []):
            queue.put_nowait(message)
        self._queues.setdefault(topic, []).append(queue)
        pending: dict[str, pubsub_pb2.PullMessagesResponse] = {}

        async def read_answers() -> None:
            async for answer in requests:
                message = pending.pop(answer.ack_message_id, None)
                if answer.HasField("ack_error"):
                    self.ack_errors.append((answer.ack_message_id, answer.ack_error.message))
                    if message is not None:
                        queue.put_nowait(message)
                else:
                    self.acks.append(answer.ack_message_id)

        reader = asyncio.create_task(read_answers())
        try:
            while True:
                message = await queue.get()
                pending[message.id] = message
                yield message
        finally:
            self._queues[topic].remove(queue)
            reader.cancel()
            with suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader


@asynccontextmanager
async def serve_pubsub(socket: Path, component: MemoryPubSubComponent) -> AsyncIterator[grpc.aio.Server]:
    """Serve ``component`` on ``socket`` (reflection listing its service) until the block exits."""
    server = grpc.aio.server()
    pubsub_pb2_grpc.add_PubSubServicer_to_server(component, server)
    reflection.enable_server_reflection([PUBSUB, reflection.SERVICE_NAME], server)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(None)
