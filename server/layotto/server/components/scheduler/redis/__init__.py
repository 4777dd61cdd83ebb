"""Redis scheduler: sorted sets shared by every runtime on the same server.

Keys (``<queue>`` is the ``queueName`` metadata, ``<partition>`` an item's partition):
``<queue>:due:<partition>`` (a sorted set, item key -> due time), ``<queue>:processing:<partition>``
(a sorted set, item key -> lease end), ``<queue>:payload`` and ``<queue>:due_at`` (hashes, item
key -> payload / due time). A claim is one Lua script:
it first puts the items whose lease ended back among the due ones, then moves the due items
to the processing set with a lease, so two runtimes never claim one item at once, and an
item whose runtime crashed is claimed again after its lease. Creating, acknowledging and
rescheduling an item are Lua scripts too (compare, then write); a claim's batch of fired items
is acknowledged by one script call. Times are the runtimes' clocks (epoch seconds): keep them
in sync (NTP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, MetadataField
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.components.scheduler import ScheduledItem, Scheduler, partition_of

# KEYS: due, processing, payload, due_at; ARGV: now, lease end, limit
_CLAIM = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, key in ipairs(expired) do
  redis.call('ZREM', KEYS[2], key)
  local due = redis.call('HGET', KEYS[4], key)
  if due then redis.call('ZADD', KEYS[1], due, key) end
end
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, key in ipairs(keys) do
  redis.call('ZREM', KEYS[1], key)
  local payload = redis.call('HGET', KEYS[3], key)
  local due = redis.call('HGET', KEYS[4], key)
  if payload and due then
    redis.call('ZADD', KEYS[2], ARGV[2], key)
    table.insert(claimed, key)
    table.insert(claimed, due)
    table.insert(claimed, payload)
  end
end
return claimed
"""

# KEYS: due, processing, payload, due_at; ARGV: key, due time, payload
_ACK = """
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] or redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[3] then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# _ACK for each item of one partition; KEYS: due, processing, payload, due_at; ARGV: (key, due time, payload)...
_ACK_MANY = """
local acked = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[i + 1] and redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[i + 2] then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
    acked = acked + 1
  end
end
return acked
"""

# KEYS: due, processing, payload, due_at; ARGV: key, due time, payload
_CREATE = """
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: due, processing, payload, due_at; ARGV: key, claimed due time, claimed payload, next due time, next payload
_RESCHEDULE = """
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] or redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[3] then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return 1
"""


def _glob_escaped(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)


class RedisScheduler(Scheduler):
    spec = ComponentSpec(
        type="redis",
        building_block="scheduler",
        features=frozenset({Feature.SHARED}),
        description="Scheduled items in Redis sorted sets, claimed by a Lua script: shared by every runtime on the "
        "same server, each item fired by one of them. Configure Redis persistence (AOF) for items to survive a "
        "Redis restart.",
        metadata=(
            *REDIS_METADATA,
            MetadataField("queueName", "Prefix of the keys holding the items.", default="layotto-scheduler"),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = self.connect(RedisConnection(name))
        self._queue = ""

    def _keys(self, key_or_partition: str) -> list[str]:
        """The keys a script on an item of ``key_or_partition``'s partition touches."""
        partition = partition_of(key_or_partition)
        q = self._queue
        return [f"{q}:due:{partition}", f"{q}:processing:{partition}", f"{q}:payload", f"{q}:due_at"]

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._queue = str(metadata["queueName"])
        await self._redis.open(metadata)
        self._claim = self._redis.client.register_script(_CLAIM)
        self._ack = self._redis.client.register_script(_ACK)
        self._ack_many = self._redis.client.register_script(_ACK_MANY)
        self._create = self._redis.client.register_script(_CREATE)
        self._reschedule = self._redis.client.register_script(_RESCHEDULE)

    async def put(self, item: ScheduledItem) -> None:
        due, processing, payload, due_at = self._keys(item.key)
        async with self._redis.errors("MULTI put"), self._redis.client.pipeline(transaction=True) as pipe:
            pipe.hset(payload, item.key, item.payload)
            pipe.hset(due_at, item.key, repr(item.due_at))
            pipe.zadd(due, {item.key: item.due_at})
            pipe.zrem(processing, item.key)
            await pipe.execute()

    async def create(self, item: ScheduledItem) -> bool:
        async with self._redis.errors("EVALSHA create"):
            created = await self._create(keys=self._keys(item.key), args=[item.key, repr(item.due_at), item.payload])
        return bool(created)

    async def get(self, key: str) -> ScheduledItem | None:
        _, _, payload, due_at = self._keys(key)
        async with self._redis.errors("HGET get"), self._redis.client.pipeline(transaction=True) as pipe:
            pipe.hget(payload, key)
            pipe.hget(due_at, key)
            found, due = await pipe.execute()
        if found is None or due is None:
            return None
        return ScheduledItem(key, float(due), bytes(found))

    async def list_prefix(self, prefix: str) -> list[ScheduledItem]:
        _, _, payload, due_at = self._keys(prefix)
        client = self._redis.client
        async with self._redis.errors("HSCAN list"):
            found = {
                bytes(k).decode(): bytes(v)
                async for k, v in client.hscan_iter(payload, match=_glob_escaped(prefix) + "*", count=500)
            }
            dues = await client.hmget(due_at, list(found)) if found else []
        return [
            ScheduledItem(key, float(due), value)
            for (key, value), due in zip(found.items(), dues, strict=True)
            if due is not None
        ]

    async def claim(self, partition: str, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        async with self._redis.errors("EVALSHA claim"):
            flat = await self._claim(keys=self._keys(partition), args=[repr(now), repr(now + lease_seconds), limit])
        return [
            ScheduledItem(bytes(flat[i]).decode(), float(flat[i + 1]), bytes(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def ack(self, item: ScheduledItem) -> None:
        async with self._redis.errors("EVALSHA ack"):
            await self._ack(keys=self._keys(item.key), args=[item.key, repr(item.due_at), item.payload])

    async def ack_many(self, items: Sequence[ScheduledItem]) -> None:
        """One script per partition (a claim's batch is one partition: one round trip)."""
        by_partition: dict[str, list[str | bytes]] = {}
        for item in items:
            by_partition.setdefault(partition_of(item.key), []).extend([item.key, repr(item.due_at), item.payload])
        async with self._redis.errors("EVALSHA ack"):
            for partition, args in by_partition.items():
                await self._ack_many(keys=self._keys(partition), args=args)

    async def reschedule(self, claimed: ScheduledItem, following: ScheduledItem) -> bool:
        assert following.key == claimed.key, "an item is rescheduled under its own key"
        args: list[str | bytes] = [
            claimed.key,
            repr(claimed.due_at),
            claimed.payload,
            repr(following.due_at),
            following.payload,
        ]
        async with self._redis.errors("EVALSHA reschedule"):
            done = await self._reschedule(keys=self._keys(claimed.key), args=args)
        return bool(done)

    async def delete(self, key: str) -> bool:
        due, processing, payload, due_at = self._keys(key)
        async with self._redis.errors("MULTI delete"), self._redis.client.pipeline(transaction=True) as pipe:
            pipe.hdel(payload, key)
            pipe.hdel(due_at, key)
            pipe.zrem(due, key)
            pipe.zrem(processing, key)
            removed = await pipe.execute()
        return bool(removed[0])
