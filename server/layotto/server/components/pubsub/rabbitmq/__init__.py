"""RabbitMQ pub/sub (AMQP 0-9-1): a durable fanout exchange per topic, a durable queue
``{group}-{topic}`` per subscribing app, named as Dapr's rabbitmq component names them.

Publishing waits for the broker's confirm; messages are persistent. A message is
acknowledged only after the runtime's delivery returns; one that fails is requeued, and
the broker requeues every unacknowledged message of a connection that drops (a runtime
killed mid-delivery). With ``enableDeadLetter`` each queue gets the dead-letter exchange
``dlx-{queue}`` and queue ``dlq-{queue}``, where the broker puts expired messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import aio_pika
import aio_pika.exceptions
import aiormq
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractQueueIterator,
)
from aio_pika.queue import QueueIterator

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Health, MetadataField
from layotto.server.components.pubsub import BrokerMessage, Deliver, InFlight, PubSub, Subscription
from layotto.server.components.pubsub.wire import pack_metadata, unpack_metadata
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span

log = logging.getLogger(__name__)
TTL_METADATA = "ttlInSeconds"
WATCH_SECONDS = 0.5  # how often a subscription checks that RabbitMQ still has its consumer
#: the longest a cancelled delivery waits to hand its message back (nack): on a channel aio-pika is
#: reopening the nack would wait for the reconnection, holding up the cancellation; RabbitMQ
#: requeues a message whose channel closed anyway
CANCELLED_NACK_SECONDS = 1.0
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,120}")
MAX_HEADER_KEY_BYTES = 128  # longer header names are truncated by the client library
ROUTING_HEADERS = ("CC", "BCC")  # RabbitMQ routes by these and closes the channel unless they are arrays


def amqp_name(text: str) -> str:
    """An exchange or queue name for ``text``: itself when AMQP clients accept it (letters, digits,
    ``_.:-``, up to 120 characters, not the reserved ``amq.``), else a sanitised name with a hash
    (distinct texts give distinct names)."""
    if _NAME.fullmatch(text) and not text.startswith("amq."):
        return text
    safe = re.sub(r"[^A-Za-z0-9_.:-]", "_", text)[:100]
    return f"t_{safe}_{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def carries(key: str, value: str) -> bool:
    """Whether an AMQP header carries the entry as it is (any value; not every name)."""
    return len(key.encode()) <= MAX_HEADER_KEY_BYTES and key not in ROUTING_HEADERS


class RabbitMqPubSub(PubSub):
    spec = ComponentSpec(
        type="rabbitmq",
        building_block="pubsub",
        description="RabbitMQ: fanout exchange per topic, durable queue per app, publisher confirms, "
        "per-message expiry and an optional dead-letter exchange. Not ordered once messages are requeued. "
        "A deleted queue is declared again by the client's recovery. Topics are carried exactly (no wildcards): "
        "a topic that is not a plain AMQP name (letters, digits, _.:- up to 120 characters) gets an exchange "
        "named after its hash; metadata of any content is carried exactly (up to 64 KiB).",
        features=frozenset({Feature.TTL, Feature.DEAD_LETTER}),
        metadata=(
            MetadataField("connectionString", "AMQP URL of the broker.", default="amqp://guest:guest@127.0.0.1:5672/"),
            MetadataField("durable", "Declare exchanges and queues durable.", type=bool, default=True),
            MetadataField("deletedWhenUnused", "Auto-delete queues with no consumer.", type=bool, default=False),
            MetadataField(
                "deliveryMode", "1: transient, 2: persistent messages.", type=int, default=2, minimum=1, maximum=2
            ),
            MetadataField(
                "prefetchCount", "Messages in flight per subscription.", type=int, default=10, minimum=1, maximum=65535
            ),
            MetadataField(
                "enableDeadLetter", "Give each queue a dead-letter exchange and queue.", type=bool, default=False
            ),
            MetadataField(
                "timeoutInSeconds", "Connect and publish timeout.", type=float, default=5.0, minimum=0.1, maximum=3600
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._durable = bool(metadata["durable"])
        self._auto_delete = bool(metadata["deletedWhenUnused"])
        self._delivery_mode = aio_pika.DeliveryMode(int(metadata["deliveryMode"]))
        self._prefetch = int(metadata["prefetchCount"])
        self._dead_letter = bool(metadata["enableDeadLetter"])
        self._timeout = float(metadata["timeoutInSeconds"])
        async with self._errors():
            self._connection = await aio_pika.connect_robust(str(metadata["connectionString"]), timeout=self._timeout)
            self._channel = await self._connection.channel(publisher_confirms=True)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def connection_health(self) -> Health:
        if self._connection is None or self._connection.is_closed or not self._connection.connected.is_set():
            return Health(up=False, details={"error": "not connected to RabbitMQ"})
        return Health(up=True)

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (TimeoutError, aiormq.exceptions.AMQPConnectionError, ConnectionError, OSError) as error:
            raise BackendUnavailable(self.name, str(error) or type(error).__name__) from error
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException) as error:
            raise BackendError(self.name, str(error) or type(error).__name__) from error

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None, "init() first"
        return self._channel

    async def _exchange(self, channel: AbstractChannel, topic: str) -> AbstractExchange:
        return await channel.declare_exchange(
            amqp_name(topic), aio_pika.ExchangeType.FANOUT, durable=self._durable, timeout=self._timeout
        )

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        headers = pack_metadata(metadata, carries)
        async with self._errors():
            exchange = self._exchanges.get(topic)
            if exchange is None:
                exchange = self._exchanges[topic] = await self._exchange(self.channel, topic)
            ttl = metadata.get(TTL_METADATA)
            message = aio_pika.Message(
                data,
                headers=dict(headers),
                delivery_mode=self._delivery_mode,
                expiration=float(ttl) if ttl else None,
            )
            with backend_span("rabbitmq", "publish", statement=topic):
                await exchange.publish(message, routing_key="", timeout=self._timeout)

    async def _queue(self, channel: AbstractChannel, topic: str, group: str) -> AbstractQueue:
        name = amqp_name(f"{group}-{topic}")
        arguments: dict[str, Any] = {}
        if self._dead_letter:
            dlx = await channel.declare_exchange(f"dlx-{name}", aio_pika.ExchangeType.FANOUT, durable=self._durable)
            dlq = await channel.declare_queue(f"dlq-{name}", durable=self._durable)
            await dlq.bind(dlx)
            arguments["x-dead-letter-exchange"] = dlx.name
        queue = await channel.declare_queue(
            name, durable=self._durable, auto_delete=self._auto_delete, arguments=arguments
        )
        await queue.bind(await self._exchange(channel, topic))
        return queue

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        assert self._connection is not None, "init() first"
        async with self._errors():
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await self._queue(channel, topic, group)
            messages = cast(QueueIterator, queue.iterator())
            await messages.consume()
        in_flight = InFlight(self._prefetch)
        where = f"{topic} (queue {queue.name})"
        tasks = [
            asyncio.create_task(self._consume(messages, topic, deliver, in_flight)),
            asyncio.create_task(self._watch(channel, str(messages.consumer_tag), where)),
        ]

        async def stop() -> None:
            self.repaired(where)
            await in_flight.cancel()
            await channel.close()  # what is unacknowledged goes back to the queue

        return Subscription(tasks, on_close=stop)

    async def _consume(
        self, messages: AbstractQueueIterator, topic: str, deliver: Deliver, in_flight: InFlight
    ) -> None:
        async for message in messages:
            await in_flight.start(self._handle(topic, message, deliver))

    async def _watch(self, channel: AbstractChannel, consumer_tag: str, where: str) -> None:
        """Report the consumer as faulty while RabbitMQ has cancelled it (its queue deleted, say)
        and aio-pika's recovery has not declared the queue and consumed again."""
        cancelled = "RabbitMQ cancelled the consumer (was its queue deleted?)"

        def on_cancel(frame: Any) -> None:  # a Basic.Cancel frame
            if frame.consumer_tag == consumer_tag:
                self.fault(where, cancelled)

        watched: object = None
        while True:
            try:
                underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
            except Exception as error:  # the channel is being reopened
                self.fault(where, error)
                await asyncio.sleep(WATCH_SECONDS)
                continue
            if underlay is not watched:  # a recovered channel is a new one
                underlay.on_consumer_cancel_callbacks.add(on_cancel)
                watched = underlay
            consuming = consumer_tag in underlay.consumers
            if consuming:
                self.repaired(where)
            else:
                self.fault(where, cancelled)
            await asyncio.sleep(WATCH_SECONDS)

    @staticmethod
    async def _handle(topic: str, message: AbstractIncomingMessage, deliver: Deliver) -> None:
        headers = message.headers or {}
        metadata = unpack_metadata(
            (str(k), v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for k, v in headers.items()
        )
        broker_id = str(message.delivery_tag or "")
        try:
            await deliver(BrokerMessage(topic, message.body, metadata, broker_id))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # TimeoutError included
                async with asyncio.timeout(CANCELLED_NACK_SECONDS):
                    await message.nack(requeue=True)
            raise
        except Exception:
            log.debug("message %s on %s not delivered; requeued", broker_id, topic, exc_info=True)
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        with contextlib.suppress(Exception):
            await message.ack()
