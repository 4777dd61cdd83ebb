"""Dapr's ``bindings.redis`` output binding (create, get, delete and increment one key), and an
input binding reading a Redis list (Layotto's own: Dapr has no Redis input binding).

Request metadata: ``key`` (required), ``ttlInSeconds`` (create and increment: the key expires
after it, 1 .. 315360000: ten years), ``delete`` ("true" on get: read and delete the key at once). ``get`` of a missing
key answers empty data, as Dapr does.

As an input binding (``listKey`` set), items pushed to the list's head (LPUSH) are delivered
oldest first, at least once: each is moved atomically (BLMOVE) to a processing list
(``<listKey>:processing:<app id>``) and removed from it only once the app took it; an item the
app fails goes back to the list's tail (delivered next, after ``redeliverIntervalInSeconds``),
and items a stopped runtime left in its processing list are put back when it starts reading
again, so an item can be delivered twice, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, Feature, MetadataField
from layotto.server.components.bindings import (
    BindingEvent,
    BindingRequest,
    BindingResponse,
    EventHandler,
    InputBinding,
    OutputBinding,
)
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.errors import InvalidArgument, LayottoError
from layotto.server.runtime.validation import require_range

log = logging.getLogger(__name__)

#: the longest ttlInSeconds taken: ten years (as the rabbitmq binding; Redis refuses EX past ~2**63 ms)
MAX_TTL_SECONDS = 315_360_000


class RedisBinding(OutputBinding, InputBinding):
    spec = ComponentSpec(
        type="redis",
        building_block="bindings",
        description="Reads and writes one Redis key per invocation (SET, GET, GETDEL, DEL, INCR), "
        "the key named by the request's key metadata. With listKey, also an input binding delivering the "
        "list's items oldest first, at least once.",
        features=frozenset({Feature.OUTPUT_BINDING, Feature.INPUT_BINDING}),
        operations=("create", "get", "delete", "increment"),
        metadata=(
            *REDIS_METADATA,
            MetadataField(
                "listKey", "Input: the list whose items are delivered to the app (empty: no input).", default=""
            ),
            MetadataField(
                "redeliverIntervalInSeconds",
                "Input: wait before an item the app failed is delivered again.",
                type=float,
                default=1.0,
                minimum=0,
                maximum=3600,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = RedisConnection(name)
        self._list = ""
        self._processing = ""
        self._redeliver_interval = 1.0
        self._block = 1.0

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._list = str(metadata["listKey"])
        self._processing = f"{self._list}:processing:{context.app_id}"
        self._redeliver_interval = float(metadata["redeliverIntervalInSeconds"])
        # a BLMOVE blocks for less than the client's read timeout, or every wait ends in a timeout
        self._block = min(1.0, float(metadata["timeoutInSeconds"]) / 2)
        await self.connect(self._redis).open(metadata)

    async def read(self, handler: EventHandler) -> None:
        if not self._list:
            raise ConfigError(f"bindings.{self.name}.metadata.listKey: needed to read the binding as an input")
        client = self._redis.client
        async with self._redis.errors("LMOVE"):  # what a stopped reader left unacknowledged goes first
            while await client.lmove(self._processing, self._list, "LEFT", "RIGHT") is not None:
                pass
        while True:
            try:
                async with self._redis.errors("BLMOVE"):
                    # Redis takes a fractional timeout; redis-py types it int
                    block: Any = self._block
                    item = await client.blmove(self._list, self._processing, block, "RIGHT", "LEFT")
                if item is not None:
                    await self._deliver(handler, _as_bytes(item))
            except LayottoError as error:  # what was moved stays in the processing list until the next start
                log.warning("redis binding %r cannot read %r: %s", self.name, self._list, error.message)
                await asyncio.sleep(self._redeliver_interval)

    async def _deliver(self, handler: EventHandler, item: bytes) -> None:
        try:
            await handler(BindingEvent(data=item, metadata={"key": self._list}))
        except Exception as error:  # the item goes back to the list's tail: delivered next
            log.warning("redis binding %r: the app did not take an item, delivering it again: %s", self.name, error)
            await asyncio.sleep(self._redeliver_interval)
            async with self._redis.errors("LMOVE"), self._redis.client.pipeline(transaction=True) as pipe:
                pipe.lrem(self._processing, 1, item)  # type: ignore[arg-type]  # redis-py takes bytes too
                pipe.rpush(self._list, item)
                await pipe.execute()
            return
        async with self._redis.errors("LREM"):
            await self._redis.client.lrem(self._processing, 1, item)  # type: ignore[arg-type]

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        key = request.required("key")
        client = self._redis.client
        if request.operation == "get":
            delete = request.metadata.get("delete", "").lower() == "true"
            async with self._redis.errors("GETDEL" if delete else "GET"):
                value = await (client.getdel(key) if delete else client.get(key))
            return BindingResponse(data=b"" if value is None else _as_bytes(value))
        if request.operation == "delete":
            async with self._redis.errors("DEL"):
                await client.delete(key)
            return BindingResponse()
        ttl = _ttl(request.metadata)
        async with self._redis.errors("SET" if request.operation == "create" else "INCR"):
            if request.operation == "create":
                await client.set(key, request.data, ex=ttl)
            else:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    if ttl is not None:
                        pipe.expire(key, ttl)
                    await pipe.execute()
        return BindingResponse()


def _ttl(metadata: Mapping[str, str]) -> int | None:
    raw = metadata.get("ttlInSeconds", "")
    if not raw:
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise InvalidArgument("metadata.ttlInSeconds", f"expected a whole number of seconds, got {raw!r}") from None
    return require_range(ttl, "metadata.ttlInSeconds", 1, MAX_TTL_SECONDS)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
