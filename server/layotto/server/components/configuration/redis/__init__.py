"""The Redis configuration store: one hash per (app id, group, label), every write and delete made
and announced in one Lua script (versions from one counter, changes published on the scope's
channel), so every runtime on the server hears of every change made through any of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.configuration import ConfigChange, ConfigItem, ConfigurationStore, Scope
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.errors import BackendUnavailable

# KEYS: the scope's hash, its channel, the version counter. ARGV: op ("set"/"del"), then per item
# key and (for set) the JSON of {content, tags}; each change is published as it is made.
_WRITE = """
local hash, channel, counter = KEYS[1], KEYS[2], KEYS[3]
if ARGV[1] == 'set' then
  for i = 2, #ARGV, 2 do
    local doc = cjson.decode(ARGV[i + 1])
    doc.version = tostring(redis.call('INCR', counter))
    local encoded = cjson.encode(doc)
    redis.call('HSET', hash, ARGV[i], encoded)
    redis.call('PUBLISH', channel, cjson.encode({key = ARGV[i], item = encoded}))
  end
else
  for i = 2, #ARGV do
    if redis.call('HDEL', hash, ARGV[i]) == 1 then
      redis.call('PUBLISH', channel, cjson.encode({key = ARGV[i], deleted = true}))
    end
  end
end
return 1
"""


def decode(scope: Scope, key: str, raw: bytes | str) -> ConfigItem:
    doc = json.loads(raw)
    tags = doc.get("tags") if isinstance(doc.get("tags"), dict) else {}
    return ConfigItem(
        scope, key, str(doc.get("content", "")), {str(k): str(v) for k, v in tags.items()}, str(doc.get("version", ""))
    )


class RedisConfigurationStore(ConfigurationStore):
    spec = ComponentSpec(
        type="redis",
        building_block="config_store",
        description="Keeps configuration items in Redis (a hash per app, group and label); changes made "
        "through any runtime are published to the watches of all of them.",
        metadata=(
            *REDIS_METADATA,
            MetadataField("keyPrefix", "Prepended to every key and channel.", default="layotto-config:"),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = self.connect(RedisConnection(name))
        self._prefix = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._redis.open(metadata)
        self._prefix = str(metadata["keyPrefix"])
        self._write = self._redis.client.register_script(_WRITE)
        # each watch holds a connection for as long as it lasts: from a pool of its own, so watches
        # never take the connections that reads and writes need
        commands = self._redis.client.connection_pool
        self._watch_pool = aioredis.ConnectionPool(
            connection_class=commands.connection_class, **commands.connection_kwargs
        )

    async def close(self) -> None:
        await self._watch_pool.disconnect()
        await super().close()

    def _keys(self, scope: Scope) -> list[str]:
        base = f"{self._prefix}{scope.app_id}/{scope.group}/{scope.label}"
        return [base, f"{base}:changes", f"{self._prefix}version"]

    async def get(self, scope: Scope, keys: Sequence[str]) -> list[ConfigItem]:
        hash_key = self._keys(scope)[0]
        async with self._redis.errors("HGETALL" if not keys else "HMGET"):
            if not keys:
                found = await self._redis.client.hgetall(hash_key)
                return [decode(scope, k.decode() if isinstance(k, bytes) else k, v) for k, v in sorted(found.items())]
            values = await self._redis.client.hmget(hash_key, list(keys))
        return [decode(scope, k, v) for k, v in zip(keys, values, strict=True) if v is not None]

    async def save(self, items: Sequence[ConfigItem]) -> None:
        by_scope: dict[Scope, list[str]] = {}
        for item in items:
            by_scope.setdefault(item.scope, []).extend(
                [item.key, json.dumps({"content": item.content, "tags": dict(item.tags)})]
            )
        async with self._redis.errors("EVALSHA save"):
            for scope, argv in by_scope.items():
                await self._write(keys=self._keys(scope), args=["set", *argv])

    async def delete(self, scope: Scope, keys: Sequence[str]) -> None:
        async with self._redis.errors("EVALSHA delete"):
            await self._write(keys=self._keys(scope), args=["del", *keys])

    @asynccontextmanager
    async def watch_scope(self, scope: Scope) -> AsyncIterator[AsyncIterator[ConfigChange]]:
        pubsub = PubSub(self._watch_pool)
        try:
            async with self._redis.errors("SUBSCRIBE"):
                await pubsub.subscribe(self._keys(scope)[1])
                confirmed = await pubsub.get_message(timeout=5.0)  # the subscription is in place
            if not confirmed or confirmed.get("type") != "subscribe":
                raise BackendUnavailable(self.name, "Redis did not confirm the subscription")
            yield self._changes(pubsub, scope)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _changes(self, pubsub: Any, scope: Scope) -> AsyncIterator[ConfigChange]:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                raise BackendUnavailable(self.name, f"the watch lost Redis: {error}") from error
            if message is None:
                await asyncio.sleep(0)
                continue
            change = json.loads(message["data"])
            if change.get("deleted"):
                yield ConfigChange(ConfigItem(scope, change["key"], ""), deleted=True)
            else:
                yield ConfigChange(decode(scope, change["key"], change["item"]))
