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
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.pubsub import BrokerMessage, Deliver, InFlight, PubSub, Subscription
from layotto.server.components.pubsub.consuming import Cursor, keep_consuming
from layotto.server.components.pubsub.wire import pack_metadata, unpack_metadata
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection

log = logging.getLogger(__name__)
_META = b"meta:"
StreamId = tuple[int, int]
_LAST_SEQUENCE = 2**64 - 1


def parse_id(entry_id: bytes | str) -> StreamId:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, sequence = text.partition("-")
    return int(ms), int(sequence or 0)


def format_id(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


def before(position: StreamId) -> StreamId:
    """The stream id right before ``position``."""
    ms, sequence = position
    return (ms, sequence - 1) if sequence else (max(ms - 1, 0), _LAST_SEQUENCE if ms else 0)


@dataclass
class _Reader:
    """One subscription: its stream and group, where messages go, and where delivery stands."""

    topic: str
    group: str
    deliver: Deliver
    in_flight: InFlight
    cursor: Cursor[StreamId]


class RedisStreamsPubSub(PubSub):
    spec = ComponentSpec(
        type="redis",
        building_block="pubsub",
        description="Redis Streams with consumer groups: durable while Redis keeps the stream; pending messages "
        "of a failed or dead consumer are claimed again. Not ordered once messages are redelivered. "
        "A consumer group destroyed on Redis is created again where delivery stopped. Topics are stream keys "
        "carried exactly (no wildcards); metadata of any content is carried exactly (up to 64 KiB).",
        metadata=(
            *REDIS_METADATA,
            MetadataField(
                "maxLenApprox",
                "Trim each stream to about this many entries (0: never).",
                type=int,
                default=100_000,
                minimum=0,
                maximum=1_000_000_000,
            ),
            MetadataField(
                "processingTimeoutInSeconds",
                "Idle time after which a pending message is claimed again.",
                type=float,
                default=15.0,
                minimum=0.1,
                maximum=86400,
            ),
            MetadataField(
                "redeliverIntervalInSeconds",
                "How often pending messages are checked.",
                type=float,
                default=2.0,
                minimum=0.1,
                maximum=3600,
            ),
            MetadataField(
                "concurrency", "Messages in flight per subscription.", type=int, default=10, minimum=1, maximum=10000
            ),
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
        packed = pack_metadata(metadata, lambda key, value: True)
        fields.update({_META + k.encode(): v for k, v in packed.items()})
        async with self._redis.errors("XADD"):
            await self._redis.client.xadd(topic, fields, maxlen=self._maxlen or None, approximate=True)

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        await self._create_group(topic, group, "$")
        reader = _Reader(
            topic, group, deliver, InFlight(self._concurrency), Cursor(await self._group_start(topic, group))
        )
        where = f"{topic} (group {group})"

        async def repair() -> None:
            position, inclusive = reader.cursor.resume()
            await self._create_group(topic, group, format_id(before(position) if inclusive else position))

        tasks = [
            asyncio.create_task(keep_consuming(self, where, lambda: self._read_new(reader), repair)),
            asyncio.create_task(keep_consuming(self, f"{where}, reclaiming", lambda: self._reclaim(reader), repair)),
        ]

        async def stop() -> None:
            self.repaired(where)
            self.repaired(f"{where}, reclaiming")
            await reader.in_flight.cancel()

        return Subscription(tasks, on_close=stop)

    async def _create_group(self, topic: str, group: str, last_id: str) -> None:
        """The consumer group (and the stream), delivering entries after ``last_id``; kept if it exists."""
        async with self._redis.errors("XGROUP CREATE"):
            try:
                await self._redis.client.xgroup_create(topic, group, id=last_id, mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
                return
        if last_id != "$":
            log.warning("created Redis consumer group %s of %s again, after entry %s", group, topic, last_id)

    async def _group_start(self, topic: str, group: str) -> StreamId:
        """Where the group stands: before its oldest pending entry, else its last delivered one."""
        async with self._redis.errors("XINFO GROUPS"):
            groups: Any = await self._redis.client.xinfo_groups(topic)
            pending: Any = await self._redis.client.xpending(topic, group)
        if pending and pending.get("pending") and pending.get("min"):
            return before(parse_id(pending["min"]))
        for info in groups:
            if info.get("name") in (group, group.encode()):
                return parse_id(info.get("last-delivered-id") or b"0-0")
        return (0, 0)

    @staticmethod
    def _message(topic: str, entry_id: bytes, fields: Mapping[bytes, bytes]) -> BrokerMessage:
        carried = [(k[len(_META) :].decode(), v.decode()) for k, v in fields.items() if k.startswith(_META)]
        return BrokerMessage(topic, fields.get(b"data", b""), unpack_metadata(carried), entry_id.decode())

    async def _handle(self, reader: _Reader, entry: tuple[bytes, Mapping[bytes, bytes]]) -> None:
        entry_id, fields = entry
        try:
            await reader.deliver(self._message(reader.topic, entry_id, fields))
            reader.cursor.done(parse_id(entry_id))
            async with self._redis.errors("XACK"):
                await self._redis.client.xack(reader.topic, reader.group, entry_id)
        except Exception:
            log.debug("message %s on %s stays pending for redelivery", entry_id, reader.topic, exc_info=True)

    async def _start(self, reader: _Reader, entry: tuple[bytes, Mapping[bytes, bytes]]) -> None:
        reader.cursor.taken(parse_id(entry[0]))
        await reader.in_flight.start(self._handle(reader, entry))

    async def _read_new(self, reader: _Reader) -> bool:
        """One XREADGROUP of new entries (NOGROUP when the group or the stream is gone); True:
        the group answered, so delivery works."""
        async with self._redis.errors("XREADGROUP"):
            batches: Any = await self._redis.client.xreadgroup(
                reader.group, self._consumer, {reader.topic: ">"}, count=self._concurrency, block=1000
            )
        for _, entries in batches or []:
            for entry in entries:
                await self._start(reader, entry)
        return True

    async def _reclaim(self, reader: _Reader) -> bool:
        """After a pause, claim the entries left pending too long (by any consumer of the group);
        True: the group answered."""
        await asyncio.sleep(self._interval)
        async with self._redis.errors("XAUTOCLAIM"):
            claimed = await self._redis.client.xautoclaim(
                reader.topic,
                reader.group,
                self._consumer,
                min_idle_time=self._idle_ms,
                start_id="0-0",
                count=self._concurrency,
            )
        entries: list[Any] = list(claimed[1]) if len(claimed) > 1 else []
        for entry_id, fields in entries:
            if fields is not None:  # None: deleted from the stream meanwhile
                await self._start(reader, (entry_id, fields))
        return True
