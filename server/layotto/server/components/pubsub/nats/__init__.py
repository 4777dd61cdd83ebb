"""NATS JetStream pub/sub: a stream per topic, a durable pull consumer per subscribing app.

The stream is created on first use (subject = the topic). Members of a consumer group
pull from one durable consumer, so they share its messages; a message is acknowledged
only after the runtime's delivery returns and is redelivered by JetStream after
``ackWaitInSeconds`` if its consumer died or failed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from layotto.server.components.base import ComponentContext, ComponentSpec, Health, MetadataField
from layotto.server.components.pubsub import BrokerMessage, Deliver, InFlight, PubSub, Subscription
from layotto.server.components.pubsub.consuming import Cursor, keep_consuming
from layotto.server.components.pubsub.wire import check_topic, is_control, pack_metadata, unpack_metadata
from layotto.server.errors import BackendError, BackendUnavailable, InvalidArgument, PayloadTooLarge
from layotto.tracing import backend_span

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64  # stream and consumer names become file names and API subjects: kept short
MAX_TOPIC_BYTES = 1024  # the subject must fit the server's 4 KiB protocol control line
FETCH_SECONDS = 1.0
IDLE_FETCHES_PER_CHECK = 5  # an idle consumer checks it still exists every this many empty fetches


def safe_name(text: str) -> str:
    """A JetStream stream or consumer name for ``text`` (distinct texts give distinct names)."""
    safe = _UNSAFE.sub("_", text)
    if safe != text or len(safe) > MAX_NAME:
        safe = f"{safe[: MAX_NAME - 9]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return safe


def check_subject(topic: str) -> None:
    """Refuse a topic that is not a literal NATS subject (InvalidArgument ``topic``)."""
    check_topic(
        topic,
        "NATS",
        unwanted=lambda char: is_control(char) or char == " ",
        wildcards="*>",
        max_bytes=MAX_TOPIC_BYTES,
        reserved_prefix="$",
    )
    if "" in topic.split("."):
        raise InvalidArgument("topic", "has an empty token (a leading, trailing or doubled '.'), not a NATS subject")


def carries(key: str, value: str) -> bool:
    """Whether a NATS header carries the entry as it is (header names are printable ASCII
    without ':'; values lose line breaks and surrounding blanks; ``Nats-`` names mean
    something to the server)."""
    return (
        bool(key)
        and all("!" <= char <= "~" and char != ":" for char in key)
        and not key.lower().startswith("nats-")
        and value == value.strip()
        and not any(is_control(char) for char in value)
    )


class _Consumer:
    """One subscription's durable pull consumer and where its delivery stands."""

    def __init__(self, topic: str, stream: str, durable: str, pull: JetStreamContext.PullSubscription) -> None:
        self.topic, self.stream, self.durable, self.pull = topic, stream, durable, pull
        self.cursor: Cursor[int] = Cursor(0)
        self.idle_fetches = 0
        self.stream_created: object = None  # when the stream was created: another time means a new stream


class NatsJetStreamPubSub(PubSub):
    spec = ComponentSpec(
        type="nats",
        building_block="pubsub",
        description="NATS JetStream: a file-backed stream per topic, durable pull consumers per app; "
        "at least once, redelivered after the ack wait. Not ordered (messages are handled concurrently). "
        "A consumer or stream deleted on the server is recreated, resuming where delivery stopped. "
        "Topics are literal subjects: wildcards (* and >), blanks, control characters, empty tokens, "
        "a leading $ and more than 1024 bytes are refused; metadata of any content is carried exactly "
        "(up to 64 KiB).",
        metadata=(
            MetadataField("natsURL", "Server URL(s), comma separated.", default="nats://127.0.0.1:4222"),
            MetadataField("token", "Authentication token.", default="", secret=True),
            MetadataField("name", "Connection name shown by the server.", default="layotto"),
            MetadataField("streamPrefix", "Prefix of the stream created for each topic.", default="layotto"),
            MetadataField("storage", "Stream storage: file or memory.", default="file"),
            MetadataField(
                "maxAgeInSeconds",
                "Discard messages older than this (0: keep).",
                type=float,
                default=0.0,
                minimum=0,
                maximum=315_360_000,
            ),
            MetadataField(
                "ackWaitInSeconds",
                "Redeliver a message not acknowledged within this time.",
                type=float,
                default=30.0,
                minimum=1,
                maximum=86400,
            ),
            MetadataField(
                "concurrency", "Messages in flight per subscription.", type=int, default=10, minimum=1, maximum=10000
            ),
            MetadataField(
                "timeoutInSeconds", "Connect and request timeout.", type=float, default=5.0, minimum=0.1, maximum=3600
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._streams: dict[str, str] = {}  # topic -> stream name, once ensured

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._prefix = str(metadata["streamPrefix"])
        self._storage = StorageType.MEMORY if metadata["storage"] == "memory" else StorageType.FILE
        self._max_age = float(metadata["maxAgeInSeconds"]) or None
        self._ack_wait = float(metadata["ackWaitInSeconds"])
        self._concurrency = int(metadata["concurrency"])
        self._timeout = float(metadata["timeoutInSeconds"])
        async with self._errors():
            self._nc = await nats.connect(
                servers=[s.strip() for s in str(metadata["natsURL"]).split(",")],
                token=metadata["token"] or None,
                name=str(metadata["name"]),
                connect_timeout=self._timeout,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
            )
        self._js = self._nc.jetstream(timeout=self._timeout)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    async def connection_health(self) -> Health:
        if self._nc is None or not self._nc.is_connected:
            return Health(up=False, details={"error": "not connected to NATS"})
        return Health(up=True)

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (
            nats.errors.NoServersError,
            nats.errors.ConnectionClosedError,
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            nats.errors.StaleConnectionError,
            OSError,
        ) as error:
            raise BackendUnavailable(self.name, str(error) or type(error).__name__) from error
        except nats.errors.Error as error:
            raise BackendError(self.name, str(error) or type(error).__name__) from error

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "init() first"
        return self._js

    async def _stream_for(self, topic: str) -> str:
        """The stream of ``topic``, created when missing (``_streams`` remembers it exists)."""
        stream = self._streams.get(topic)
        if stream is None:
            stream = safe_name(f"{self._prefix}-{topic}")
            async with self._errors():
                try:
                    await self.js.stream_info(stream)
                except nats.js.errors.NotFoundError:
                    config = StreamConfig(name=stream, subjects=[topic], storage=self._storage, max_age=self._max_age)
                    await self.js.add_stream(config)
            self._streams[topic] = stream
        return stream

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        check_subject(topic)
        headers = pack_metadata(metadata, carries) or None
        stream = await self._stream_for(topic)
        async with self._errors():
            with backend_span("nats", "publish", statement=topic):
                try:
                    await self.js.publish(topic, data, stream=stream, headers=headers)
                except nats.js.errors.NoStreamResponseError:
                    log.warning("the stream of %s is gone from NATS; creating it again", topic)
                    self._streams.pop(topic, None)
                    stream = await self._stream_for(topic)
                    await self.js.publish(topic, data, stream=stream, headers=headers)
                except nats.errors.MaxPayloadError:
                    assert self._nc is not None
                    raise PayloadTooLarge("data", len(data), self._nc.max_payload) from None

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        check_subject(topic)
        stream = await self._stream_for(topic)
        durable = safe_name(group)
        async with self._errors():
            pull = await self.js.pull_subscribe(topic, durable=durable, stream=stream, config=self._consumer_config())
            info = await pull.consumer_info()
            stream_info = await self.js.stream_info(stream)
        consumer = _Consumer(topic, stream, durable, pull)
        consumer.stream_created = stream_info.created
        consumer.cursor.done_up_to(info.ack_floor.stream_seq if info.ack_floor else 0)
        in_flight = InFlight(self._concurrency)
        where = f"{topic} (group {group})"
        task = asyncio.create_task(
            keep_consuming(
                self,
                where,
                lambda: self._pull(consumer, deliver, in_flight),
                lambda: self._restore(consumer),
            )
        )

        async def stop() -> None:
            self.repaired(where)
            await in_flight.cancel()
            if self._nc is not None and not self._nc.is_closed:
                await pull.unsubscribe()

        return Subscription([task], on_close=stop)

    def _consumer_config(self, start: int | None = None) -> ConsumerConfig:
        config = ConsumerConfig(ack_wait=self._ack_wait, max_ack_pending=max(self._concurrency * 10, 1000))
        if start is not None:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start
        return config

    async def _pull(self, consumer: _Consumer, deliver: Deliver, in_flight: InFlight) -> bool:
        """One fetch and its hand-out; every few idle fetches, a check that the consumer exists
        (a deleted consumer or stream only shows as fetches that time out). True when messages
        came or the check found the consumer: an idle fetch alone shows delivery works."""
        try:
            messages = await consumer.pull.fetch(batch=self._concurrency, timeout=FETCH_SECONDS)
        except TimeoutError:  # nats.errors.TimeoutError and the plain one fetch also raises
            consumer.idle_fetches += 1
            if consumer.idle_fetches % IDLE_FETCHES_PER_CHECK == 0:
                info = await consumer.pull.consumer_info()  # NotFoundError when deleted
                consumer.cursor.done_up_to(info.ack_floor.stream_seq if info.ack_floor else 0)
                return True
            return False
        consumer.idle_fetches = 0
        for message in messages:
            sequence = message.metadata.sequence.stream if message.reply else 0
            consumer.cursor.taken(sequence)
            await in_flight.start(self._handle(consumer, message, deliver))
        return True

    async def _restore(self, consumer: _Consumer) -> None:
        """Recreate the stream and the durable consumer when they are gone; a new consumer
        starts where this runtime's delivery stopped (the whole stream if that is new)."""
        self._streams.pop(consumer.topic, None)
        await self._stream_for(consumer.topic)
        async with self._errors():
            try:
                await self.js.consumer_info(consumer.stream, consumer.durable)
                return
            except nats.js.errors.NotFoundError:
                pass
            position, inclusive = consumer.cursor.resume()
            start = position if inclusive else position + 1
            stream = await self.js.stream_info(consumer.stream)
            if stream.created != consumer.stream_created or stream.state.last_seq < start - 1:
                start, consumer.cursor = 1, Cursor(0)  # a new stream: its sequences start again
                consumer.stream_created = stream.created
            log.warning(
                "recreating NATS consumer %s of %s from stream sequence %d", consumer.durable, consumer.topic, start
            )
            config = self._consumer_config(start)
            config.durable_name = consumer.durable
            await self.js.add_consumer(consumer.stream, config)

    @staticmethod
    async def _handle(consumer: _Consumer, message: Msg, deliver: Deliver) -> None:
        sequence = message.metadata.sequence.stream if message.reply else 0
        headers = [(k, v) for k, v in (message.headers or {}).items() if not k.lower().startswith("nats-")]
        broker_message = BrokerMessage(consumer.topic, message.data, unpack_metadata(headers), str(sequence or ""))
        try:
            await deliver(broker_message)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await message.nak()  # offered again now rather than after the ack wait
            raise
        except Exception:
            log.debug(
                "message %s on %s not delivered; JetStream redelivers it", sequence, consumer.topic, exc_info=True
            )
            with contextlib.suppress(nats.errors.Error):
                await message.nak(delay=1.0)
            return
        consumer.cursor.done(sequence)  # delivered: at least once is met even if the ack is lost
        try:
            await message.ack()
        except nats.errors.Error:
            log.debug("ack of %s on %s failed; it may be delivered again", sequence, consumer.topic)
