"""The Redis connection shared by the Redis components: metadata, pool and error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.server.components.base import Health, MetadataField
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span

#: connection settings, named as in Dapr's redis components
REDIS_METADATA = (
    MetadataField("redisHost", "HOST:PORT of the Redis server.", default="127.0.0.1:6379", required=True),
    MetadataField("redisUsername", "ACL user name.", default=""),
    MetadataField("redisPassword", "Password.", default=""),
    MetadataField("redisDB", "Database number.", type=int, default=0),
    MetadataField("enableTLS", "Connect with TLS.", type=bool, default=False),
    MetadataField("timeoutInSeconds", "Connect and command timeout.", type=float, default=5.0),
    MetadataField("poolSize", "Maximum connections.", type=int, default=32),
)


class RedisConnection:
    def __init__(self, component: str) -> None:
        self.component = component
        self._client: aioredis.Redis | None = None
        self._host, self._port = "", 0

    @property
    def client(self) -> aioredis.Redis:
        assert self._client is not None, "open() first"
        return self._client

    async def open(self, metadata: Mapping[str, Any]) -> None:
        host, _, port = str(metadata["redisHost"]).rpartition(":")
        self._host, self._port = host or "127.0.0.1", int(port or 6379)
        timeout = float(metadata["timeoutInSeconds"])
        pool = aioredis.BlockingConnectionPool(
            connection_class=aioredis.SSLConnection if metadata["enableTLS"] else aioredis.Connection,
            host=host or "127.0.0.1",
            port=int(port or 6379),
            db=int(metadata["redisDB"]),
            username=metadata["redisUsername"] or None,
            password=metadata["redisPassword"] or None,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=int(metadata["poolSize"]),
            timeout=timeout,  # how long a call waits for a free connection
        )
        self._client = aioredis.Redis(connection_pool=pool)
        async with self.errors():
            await self._client.ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    @asynccontextmanager
    async def errors(self, operation: str = "PING") -> AsyncIterator[None]:
        """Map redis-py's errors to the runtime's, in a backend span named after ``operation``."""
        try:
            with backend_span("redis", operation, peer=self._host, port=self._port):
                yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise BackendUnavailable(self.component, str(error) or type(error).__name__) from error
        except RedisError as error:
            raise BackendError(self.component, str(error)) from error

    async def health(self) -> Health:
        try:
            async with self.errors():
                await self.client.ping()
        except (BackendUnavailable, BackendError) as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)
