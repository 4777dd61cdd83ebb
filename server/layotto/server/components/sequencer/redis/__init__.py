"""Redis sequencer: INCRBY on a counter key (persisted as Redis persists)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Feature
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.components.sequencer import BIGGER_THAN, SEGMENT_SIZE, Sequencer


class RedisSequencer(Sequencer):
    spec = ComponentSpec(
        type="redis",
        building_block="sequencer",
        description="Counters in Redis, one INCRBY per block. Ids survive runtime restarts; configure Redis "
        "persistence (AOF) for them to survive a Redis restart.",
        features=frozenset({Feature.SEQUENCER_SEGMENTS}),
        metadata=(*REDIS_METADATA, KEY_PREFIX, SEGMENT_SIZE, BIGGER_THAN),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = self.connect(RedisConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._redis.open(metadata)

    async def next_block(self, key: str, size: int) -> int:
        async with self._redis.errors("INCRBY"):
            return int(await self._redis.client.incrby(key, size))
