"""Redis lock store: SET NX PX to take a lock, compare-and-delete and compare-and-extend in
Lua, expiry by Redis's own clock (so runtimes' clocks do not matter)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Feature
from layotto.server.components.lock import LockStatus, LockStore
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection

_UNLOCK = """
local holder = redis.call('GET', KEYS[1])
if not holder then return 1 end
if holder ~= ARGV[1] then return 2 end
redis.call('DEL', KEYS[1])
return 0
"""

_KEEP_ALIVE = """
local holder = redis.call('GET', KEYS[1])
if not holder then return 1 end
if holder ~= ARGV[1] then return 2 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""


class RedisLockStore(LockStore):
    spec = ComponentSpec(
        type="redis",
        building_block="lock",
        description="Locks in Redis (standalone): shared by every runtime on the same server.",
        features=frozenset({Feature.LOCK_KEEP_ALIVE}),
        metadata=(*REDIS_METADATA, KEY_PREFIX),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = self.connect(RedisConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._redis.open(metadata)
        self._unlock = self._redis.client.register_script(_UNLOCK)
        self._keep_alive = self._redis.client.register_script(_KEEP_ALIVE)

    async def try_lock(self, key: str, owner: str, expire_seconds: int) -> bool:
        async with self._redis.errors("SET NX PX"):
            return bool(await self._redis.client.set(key, owner, nx=True, px=expire_seconds * 1000))

    async def unlock(self, key: str, owner: str) -> LockStatus:
        async with self._redis.errors("EVALSHA unlock"):
            return LockStatus(int(await self._unlock(keys=[key], args=[owner])))

    async def keep_alive(self, key: str, owner: str, expire_seconds: int) -> LockStatus:
        async with self._redis.errors("EVALSHA keep-alive"):
            return LockStatus(int(await self._keep_alive(keys=[key], args=[owner, expire_seconds * 1000])))
