"""Redis scheduler: sorted sets shared by every runtime on the same server.

Keys (``<queue>`` is the ``queueName`` metadata): ``<queue>:due`` (a sorted set, item key ->
due time), ``<queue>:processing`` (a sorted set, item key -> lease end), ``<queue>:payload``
and ``<queue>:due_at`` (hashes, item key -> payload / due time). A claim is one Lua script:
it first puts the items whose lease ended back among the due ones, then moves the due items
to the processing set with a lease, so two runtimes never claim one item at once, and an
item whose runtime crashed is claimed again after its lease. Times are the runtimes' clocks
(epoch seconds): keep them in sync (NTP).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.components.scheduler import ScheduledItem, Scheduler

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


class RedisScheduler(Scheduler):
    spec = ComponentSpec(
        type="redis",
        building_block="scheduler",
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
        self._keys: list[str] = []

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        queue = str(metadata["queueName"])
        self._keys = [f"{queue}:due", f"{queue}:processing", f"{queue}:payload", f"{queue}:due_at"]
        await self._redis.open(metadata)
        self._claim = self._redis.client.register_script(_CLAIM)
        self._ack = self._redis.client.register_script(_ACK)

    async def put(self, item: ScheduledItem) -> None:
        due, processing, payload, due_at = self._keys
        async with self._redis.errors("MULTI put"), self._redis.client.pipeline(transaction=True) as pipe:
            pipe.hset(payload, item.key, item.payload)
            pipe.hset(due_at, item.key, repr(item.due_at))
            pipe.zadd(due, {item.key: item.due_at})
            pipe.zrem(processing, item.key)
            await pipe.execute()

    async def claim(self, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        async with self._redis.errors("EVALSHA claim"):
            flat = await self._claim(keys=self._keys, args=[repr(now), repr(now + lease_seconds), limit])
        return [
            ScheduledItem(bytes(flat[i]).decode(), float(flat[i + 1]), bytes(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def ack(self, item: ScheduledItem) -> None:
        async with self._redis.errors("EVALSHA ack"):
            await self._ack(keys=self._keys, args=[item.key, repr(item.due_at), item.payload])

    async def delete(self, key: str) -> bool:
        due, processing, payload, due_at = self._keys
        async with self._redis.errors("MULTI delete"), self._redis.client.pipeline(transaction=True) as pipe:
            pipe.hdel(payload, key)
            pipe.hdel(due_at, key)
            pipe.zrem(due, key)
            pipe.zrem(processing, key)
            removed = await pipe.execute()
        return bool(removed[0])
