"""Dapr's ``bindings.redis`` output binding: create, get, delete and increment one key.

Request metadata: ``key`` (required), ``ttlInSeconds`` (create and increment: the key expires
after it), ``delete`` ("true" on get: read and delete the key at once). ``get`` of a missing
key answers empty data, as Dapr does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature
from layotto.server.components.bindings import BindingRequest, BindingResponse, OutputBinding
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.errors import InvalidArgument


class RedisBinding(OutputBinding):
    spec = ComponentSpec(
        type="redis",
        building_block="bindings",
        description="Reads and writes one Redis key per invocation (SET, GET, GETDEL, DEL, INCR), "
        "the key named by the request's key metadata.",
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=("create", "get", "delete", "increment"),
        metadata=REDIS_METADATA,
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = RedisConnection(name)

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self.connect(self._redis).open(metadata)

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
    if ttl <= 0:
        raise InvalidArgument("metadata.ttlInSeconds", f"must be at least 1, got {ttl}")
    return ttl


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
