"""Dapr's ``bindings.rabbitmq``: ``create`` publishes the data to one queue; as an input binding
it delivers that queue's messages.

The queue (``queueName``) is declared at start with the component's settings; each message is
persistent, carries the request metadata as AMQP headers, and takes ``ttlInSeconds``,
``priority`` and ``contentType`` from the request metadata, as in Dapr (at most 64 KiB of
metadata, header names and contentType at most 255 bytes: InvalidArgument past them). The call answers once
the broker confirmed the message. As an input, a message is acknowledged only once the app took
it; one the app fails is requeued (after ``redeliverIntervalInSeconds``), and one in flight when
the runtime stops is requeued by the broker: at least once. Its AMQP headers are the event's
metadata.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError
from aiormq.exceptions import ChannelInvalidStateError

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Health, MetadataField
from layotto.server.components.bindings import (
    BindingEvent,
    BindingRequest,
    BindingResponse,
    EventHandler,
    InputBinding,
    OutputBinding,
)
from layotto.server.errors import BackendError, BackendUnavailable, InvalidArgument

log = logging.getLogger(__name__)

#: the longest AMQP short string (a header name, the content type)
MAX_SHORT_STRING = 255
#: the most bytes of request metadata a message carries as headers (the broker's frames are 128 KiB)
MAX_HEADER_BYTES = 64 * 1024


class RabbitMqBinding(OutputBinding, InputBinding):
    spec = ComponentSpec(
        type="rabbitmq",
        building_block="bindings",
        description="Publishes each invocation's data to one RabbitMQ queue as a persistent message, confirmed "
        "by the broker; request metadata travels as AMQP headers. As an input, delivers the queue's messages "
        "at least once.",
        features=frozenset({Feature.OUTPUT_BINDING, Feature.INPUT_BINDING}),
        operations=("create",),
        metadata=(
            MetadataField(
                "host", "AMQP URL of the broker.", required=True, example="amqp://guest:guest@127.0.0.1:5672/"
            ),
            MetadataField(
                "queueName", "The queue messages go to (declared at start).", required=True, example="orders"
            ),
            MetadataField("durable", "Declare the queue durable.", type=bool, default=False),
            MetadataField("deleteWhenUnused", "Declare the queue auto-delete.", type=bool, default=False),
            MetadataField("exclusive", "Declare the queue exclusive to this connection.", type=bool, default=False),
            MetadataField(
                "ttlInSeconds",
                "Default time to live of the queue's messages (0: none).",
                type=int,
                default=0,
                minimum=0,
                maximum=4_294_967,  # x-message-ttl is milliseconds in 32 bits
            ),
            MetadataField(
                "prefetchCount",
                "Input: messages handed to the runtime before it acknowledged them.",
                type=int,
                default=1,
                minimum=1,
                maximum=65535,
            ),
            MetadataField(
                "redeliverIntervalInSeconds",
                "Input: wait before a message the app failed is requeued.",
                type=float,
                default=1.0,
                minimum=0,
                maximum=3600,
            ),
            MetadataField(
                "maxPriority",
                "Make a priority queue with this highest priority (0: not one).",
                type=int,
                default=0,
                minimum=0,
                maximum=255,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._queue = ""
        self._prefetch = 1
        self._redeliver_interval = 1.0

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._queue = str(metadata["queueName"])
        self._prefetch = int(metadata["prefetchCount"])
        self._redeliver_interval = float(metadata["redeliverIntervalInSeconds"])
        try:
            self._connection = await aio_pika.connect_robust(str(metadata["host"]), timeout=5)
            self._channel = await self._connection.channel(publisher_confirms=True)
            arguments: dict[str, Any] = {}
            if metadata["ttlInSeconds"]:
                arguments["x-message-ttl"] = int(metadata["ttlInSeconds"]) * 1000
            if metadata["maxPriority"]:
                arguments["x-max-priority"] = int(metadata["maxPriority"])
            assert self._channel is not None
            await self._channel.declare_queue(
                self._queue,
                durable=bool(metadata["durable"]),
                auto_delete=bool(metadata["deleteWhenUnused"]),
                exclusive=bool(metadata["exclusive"]),
                arguments=arguments or None,
            )
        except (AMQPError, OSError) as error:
            await self.close()
            raise BackendUnavailable(self.name, f"cannot reach {self._queue!r}: {error}") from error

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def read(self, handler: EventHandler) -> None:
        if self._connection is None:
            raise BackendUnavailable(self.name, "not connected to the broker")
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await channel.get_queue(self._queue)
            async with queue.iterator() as messages:
                async for message in messages:
                    await self._deliver(handler, message)
        finally:
            await channel.close()  # what is not acknowledged goes back to the queue

    async def _deliver(self, handler: EventHandler, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        headers = {str(key): str(value) for key, value in (message.headers or {}).items()}
        try:
            await handler(BindingEvent(data=message.body, metadata=headers))
        except Exception as error:
            log.warning("rabbitmq binding %r: the app did not take a message, requeueing it: %s", self.name, error)
            await asyncio.sleep(self._redeliver_interval)
            await message.nack(requeue=True)
            return
        await message.ack()

    async def health(self) -> Health:
        up = self._connection is not None and not self._connection.is_closed
        return Health(up=up, details={} if up else {"error": "not connected to the broker"})

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        if self._channel is None:
            raise BackendUnavailable(self.name, "not connected to the broker")
        _check_headers(request.metadata)
        message = aio_pika.Message(
            request.data,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type=request.metadata.get("contentType", "text/plain"),
            headers=dict(request.metadata),
            expiration=_seconds(request.metadata, "ttlInSeconds", 1, 315360000),
            priority=_seconds(request.metadata, "priority", 0, 255),
        )
        try:
            await self._channel.default_exchange.publish(message, routing_key=self._queue, timeout=5)
        except ChannelInvalidStateError as error:  # the connection is down: the robust one is reopening it
            raise BackendUnavailable(self.name, f"publish to {self._queue!r}: {error}") from error
        except (AMQPError, OSError, TimeoutError) as error:
            raise BackendError(self.name, f"publish to {self._queue!r}: {error or type(error).__name__}") from error
        return BindingResponse()


def _check_headers(metadata: Mapping[str, str]) -> None:
    """InvalidArgument naming the request metadata that AMQP cannot carry: a key or ``contentType`` over
    255 bytes (a short string), or headers over :data:`MAX_HEADER_BYTES` in all (the broker closes the
    whole connection on a content header larger than its frame)."""
    total = 0
    for key, value in metadata.items():
        if len(key.encode()) > MAX_SHORT_STRING:
            raise InvalidArgument(f"metadata.{key[:40]}", f"a header name is at most {MAX_SHORT_STRING} bytes")
        total += len(key.encode()) + len(value.encode()) + 6
    if len(metadata.get("contentType", "").encode()) > MAX_SHORT_STRING:
        raise InvalidArgument("metadata.contentType", f"is at most {MAX_SHORT_STRING} bytes")
    if total > MAX_HEADER_BYTES:
        raise InvalidArgument("metadata", f"{total} bytes of headers is over the {MAX_HEADER_BYTES}-byte limit")


def _seconds(metadata: Mapping[str, str], key: str, low: int, high: int) -> int | None:
    """The whole number ``metadata[key]`` (None when absent); InvalidArgument naming it when out of range."""
    raw = metadata.get(key, "")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"metadata.{key}", f"expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidArgument(f"metadata.{key}", f"must be between {low} and {high}, got {value}")
    return value
