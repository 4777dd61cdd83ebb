"""A pub/sub broker served by a pluggable component (``dapr.proto.components.v1.PubSub``).

Each subscription is one ``PullMessages`` stream: its first request names the topic (with the
consumer group as ``consumerID`` metadata, Dapr's key), then every message the component sends is
delivered to the runtime and acknowledged on the stream (``ack_message_id``) once delivered, or
answered with ``ack_error`` when delivery failed, so the component offers it again. A stream that
breaks is reported as a fault and reopened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

from layotto.proto.components.v1 import common_pb2, pubsub_pb2, pubsub_pb2_grpc
from layotto.server.components.base import ComponentContext, ConfigError, Health
from layotto.server.components.pluggable import (
    CALL_TIMEOUT,
    REOPEN_SECONDS,
    OpenSpec,
    backend_error,
    instance_metadata,
    known_features,
)
from layotto.server.components.pubsub import BrokerMessage, Deliver, PubSub, Subscription
from layotto.server.errors import LayottoError

if TYPE_CHECKING:
    from layotto.server.components.pluggable import Discovered

log = logging.getLogger(__name__)


def pluggable_pubsub(type_name: str, found: Discovered) -> type[PluggablePubSub]:
    """A pub/sub class of type ``type_name`` talking to the socket ``found`` describes."""
    spec = OpenSpec(
        type=type_name,
        building_block="pubsub",
        description=f"Pluggable pub/sub on {found.socket}",
        features=known_features(found.features),
    )
    return type(f"PluggablePubSub_{type_name}", (PluggablePubSub,), {"spec": spec, "socket": str(found.socket)})


class PluggablePubSub(PubSub):
    """Publishes with ``Publish`` and consumes with ``PullMessages``; gRPC errors become
    BackendUnavailable (UNAVAILABLE, DEADLINE_EXCEEDED) or BackendError."""

    socket: ClassVar[str]

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pubsub_pb2_grpc.PubSubAsyncStub | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._channel = grpc.aio.insecure_channel(f"unix:{self.socket}")
        self._stub = pubsub_pb2_grpc.PubSubStub(self._channel)
        request = pubsub_pb2.PubSubInitRequest(metadata=common_pb2.MetadataRequest(properties=dict(metadata)))
        try:
            await self._stub.Init(request, timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise ConfigError(f"pubsub.{self.name}: pluggable component refused Init: {error.details()}") from None

    def _metadata(self) -> tuple[tuple[str, str]]:
        return instance_metadata(self.name)

    def _client(self) -> pubsub_pb2_grpc.PubSubAsyncStub:
        assert self._stub is not None, "init() first"
        return self._stub

    def _error(self, error: grpc.aio.AioRpcError) -> LayottoError:
        return backend_error(self.name, error)

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        request = pubsub_pb2.PublishRequest(data=data, pubsub_name=self.name, topic=topic, metadata=dict(metadata))
        try:
            await self._client().Publish(request, timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise self._error(error) from None

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        first = pubsub_pb2.PullMessagesRequest(topic=pubsub_pb2.Topic(name=topic, metadata={"consumerID": group}))
        opened = asyncio.Event()
        task = asyncio.create_task(self._pull(first, deliver, opened), name=f"pluggable-pull-{self.name}-{topic}")
        await opened.wait()
        return Subscription([task])

    async def _pull(self, first: pubsub_pb2.PullMessagesRequest, deliver: Deliver, opened: asyncio.Event) -> None:
        """Keep one PullMessages stream open on ``first``'s topic, delivering and acknowledging."""
        where = f"topic {first.topic.name}"
        while True:
            answers: asyncio.Queue[pubsub_pb2.PullMessagesRequest | None] = asyncio.Queue()
            answers.put_nowait(first)
            call = self._client().PullMessages(_requests(answers), metadata=self._metadata())
            opened.set()
            try:
                async for message in call:
                    self.repaired(where)
                    answers.put_nowait(await self._deliver(message, deliver))
                self.fault(where, "the component ended the stream")
            except grpc.aio.AioRpcError as error:
                self.fault(where, f"{error.code().name}: {error.details()}")
            finally:
                answers.put_nowait(None)
                call.cancel()
            await asyncio.sleep(REOPEN_SECONDS)

    @staticmethod
    async def _deliver(message: pubsub_pb2.PullMessagesResponse, deliver: Deliver) -> pubsub_pb2.PullMessagesRequest:
        """Deliver one message; the stream's answer: its ack, or an ack error when delivery failed."""
        received = BrokerMessage(
            topic=message.topic_name, data=message.data, metadata=dict(message.metadata), broker_id=message.id
        )
        try:
            await deliver(received)
        except Exception as error:  # the runtime's retries are spent or it stops: the component offers it again
            text = f"{type(error).__name__}: {error}"
            return pubsub_pb2.PullMessagesRequest(
                ack_message_id=message.id, ack_error=pubsub_pb2.AckMessageError(message=text)
            )
        return pubsub_pb2.PullMessagesRequest(ack_message_id=message.id)

    async def connection_health(self) -> Health:
        try:
            await self._client().Ping(common_pb2.PingRequest(), timeout=5, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            return Health(up=False, details={"error": f"{error.code().name}: {error.details()}"})
        return Health(up=True)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None


async def _requests(
    answers: asyncio.Queue[pubsub_pb2.PullMessagesRequest | None],
) -> AsyncIterator[pubsub_pb2.PullMessagesRequest]:
    while (request := await answers.get()) is not None:
        yield request
