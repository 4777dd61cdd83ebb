"""Redis Streams pub/sub: a stream per topic, a consumer group per subscribing app.

Each runtime reads with its own consumer name; a message is acknowledged (XACK) only
after the runtime's delivery returns. Messages left pending by a consumer that failed
or died are claimed again (XAUTOCLAIM) once idle for ``processingTimeoutInSeconds``,
so nothing published is lost while Redis keeps the stream.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from redis.exceptions import ResponseError

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.pubsub import BrokerMessage, Deliver, InFlight, PubSub, Subscription
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.errors import BackendUnavailable

log = logging.getLogger(__name__)
_META = b"meta:"


class RedisStreamsPubSub(PubSub):
    spec = ComponentSpec(
        type="redis",
        building_block="pubsub",
        description="Redis Streams with consumer groups: durable while Redis keeps the stream; pending messages "
        "of a failed or dead consumer are claimed again. Not ordered once messages are redelivered.",
        metadata=(
            *REDIS_METADATA,
            MetadataField(
                "maxLenApprox", "Trim each stream to about this many entries (0: never).", type=int, default=100_000
            ),
            MetadataField(
                "processingTimeoutInSeconds",
                "Idle time after which a pending message is claimed again.",
                type=float,
                default=15.0,
            ),
            MetadataField(
                "redeliverIntervalInSeconds", "How often pending messages are checked.", type=float, default=2.0
            ),
            MetadataField("concurrency", "Messages in flight per subscription.", type=int, default=10),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = self.connect(RedisConnection(name))
        self._consumer = f"layotto-{uuid.uuid4().hex[:12]}"

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._redis.open(metadata)
        self._maxlen = int(metadata["maxLenApprox"])
        self._idle_ms = int(float(metadata["processingTimeoutInSeconds"]) * 1000)
        self._interval = float(metadata["redeliverIntervalInSeconds"])
        self._concurrency = int(metadata["concurrency"])

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        fields: dict[Any, Any] = {b"data": data}
        fields.update({_META + k.encode(): v for k, v in metadata.items()})
        async with self._redis.errors("XADD"):
            await self._redis.client.xadd(topic, fields, maxlen=self._maxlen or None, approximate=True)

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        async with self._redis.errors("XGROUP CREATE"):
            try:
                await self._redis.client.xgroup_create(topic, group, id="$", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
        in_flight = InFlight(self._concurrency)
        tasks = [
            asyncio.create_task(self._read_new(topic, group, deliver, in_flight)),
            asyncio.create_task(self._reclaim(topic, group, deliver, in_flight)),
        ]
        return Subscription(tasks, on_close=in_flight.cancel)

    @staticmethod
    def _message(topic: str, entry_id: bytes, fields: Mapping[bytes, bytes]) -> BrokerMessage:
        metadata = {k[len(_META) :].decode(): v.decode() for k, v in fields.items() if k.startswith(_META)}
        return BrokerMessage(topic, fields.get(b"data", b""), metadata, entry_id.decode())

    async def _handle(
        self, topic: str, group: str, entry: tuple[bytes, Mapping[bytes, bytes]], deliver: Deliver
    ) -> None:
        entry_id, fields = entry
        try:
            await deliver(self._message(topic, entry_id, fields))
            async with self._redis.errors("XACK"):
                await self._redis.client.xack(topic, group, entry_id)
        except Exception:
            log.debug("message %s on %s stays pending for redelivery", entry_id, topic, exc_info=True)

    async def _read_new(self, topic: str, group: str, deliver: Deliver, in_flight: InFlight) -> None:
        while True:
            try:
                async with self._redis.errors("XREADGROUP"):
                    batches: Any = await self._redis.client.xreadgroup(
                        group, self._consumer, {topic: ">"}, count=self._concurrency, block=1000
                    )
            except BackendUnavailable:
                await asyncio.sleep(1.0)
                continue
            for _, entries in batches or []:
                for entry in entries:
                    await in_flight.start(self._handle(topic, group, entry, deliver))

    async def _reclaim(self, topic: str, group: str, deliver: Deliver, in_flight: InFlight) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                async with self._redis.errors("XAUTOCLAIM"):
                    claimed = await self._redis.client.xautoclaim(
                        topic,
                        group,
                        self._consumer,
                        min_idle_time=self._idle_ms,
                        start_id="0-0",
                        count=self._concurrency,
                    )
            except BackendUnavailable:
                continue
            entries: list[Any] = list(claimed[1]) if len(claimed) > 1 else []
            for entry_id, fields in entries:
                if fields is not None:  # None: deleted from the stream meanwhile
                    await in_flight.start(self._handle(topic, group, (entry_id, fields), deliver))
