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
from nats.js.api import ConsumerConfig, StorageType, StreamConfig

from layotto.server.components.base import ComponentContext, ComponentSpec, Health, MetadataField
from layotto.server.components.pubsub import BrokerMessage, Deliver, InFlight, PubSub, Subscription
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_name(text: str) -> str:
    """A JetStream stream or consumer name for ``text`` (distinct texts give distinct names)."""
    safe = _UNSAFE.sub("_", text)
    if safe != text:
        safe = f"{safe}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return safe


class NatsJetStreamPubSub(PubSub):
    spec = ComponentSpec(
        type="nats",
        building_block="pubsub",
        description="NATS JetStream: a file-backed stream per topic, durable pull consumers per app; "
        "at least once, redelivered after the ack wait. Not ordered (messages are handled concurrently).",
        metadata=(
            MetadataField("natsURL", "Server URL(s), comma separated.", default="nats://127.0.0.1:4222"),
            MetadataField("token", "Authentication token.", default=""),
            MetadataField("name", "Connection name shown by the server.", default="layotto"),
            MetadataField("streamPrefix", "Prefix of the stream created for each topic.", default="layotto"),
            MetadataField("storage", "Stream storage: file or memory.", default="file"),
            MetadataField("maxAgeInSeconds", "Discard messages older than this (0: keep).", type=float, default=0.0),
            MetadataField(
                "ackWaitInSeconds", "Redeliver a message not acknowledged within this time.", type=float, default=30.0
            ),
            MetadataField("concurrency", "Messages in flight per subscription.", type=int, default=10),
            MetadataField("timeoutInSeconds", "Connect and request timeout.", type=float, default=5.0),
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

    async def health(self) -> Health:
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
        stream = await self._stream_for(topic)
        async with self._errors():
            with backend_span("nats", "publish", statement=topic):
                await self.js.publish(topic, data, stream=stream, headers=dict(metadata) or None)

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        stream = await self._stream_for(topic)
        config = ConsumerConfig(ack_wait=self._ack_wait, max_ack_pending=max(self._concurrency * 10, 1000))
        async with self._errors():
            pull = await self.js.pull_subscribe(topic, durable=safe_name(group), stream=stream, config=config)
        in_flight = InFlight(self._concurrency)
        task = asyncio.create_task(self._pull(pull, topic, deliver, in_flight))

        async def stop() -> None:
            await in_flight.cancel()
            if self._nc is not None and not self._nc.is_closed:
                await pull.unsubscribe()

        return Subscription([task], on_close=stop)

    async def _pull(
        self, pull: JetStreamContext.PullSubscription, topic: str, deliver: Deliver, in_flight: InFlight
    ) -> None:
        while True:
            try:
                messages = await pull.fetch(batch=self._concurrency, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except nats.errors.Error as error:
                log.debug("fetching %s failed: %s", topic, error)
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                await in_flight.start(self._handle(topic, message, deliver))

    @staticmethod
    async def _handle(topic: str, message: Msg, deliver: Deliver) -> None:
        broker_id = str(message.metadata.sequence.stream) if message.reply else ""
        try:
            await deliver(BrokerMessage(topic, message.data, dict(message.headers or {}), broker_id))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await message.nak()  # offered again now rather than after the ack wait
            raise
        except Exception:
            log.debug("message %s on %s not delivered; JetStream redelivers it", broker_id, topic, exc_info=True)
            with contextlib.suppress(nats.errors.Error):
                await message.nak(delay=1.0)
            return
        try:
            await message.ack()
        except nats.errors.Error:
            log.debug("ack of %s on %s failed; it may be delivered again", broker_id, topic)
