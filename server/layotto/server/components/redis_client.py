"""The Redis connection shared by the Redis components: metadata, pool and error mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.server.components.base import Health, MetadataField
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span

try:  # recent redis-py: RESP3 maintenance notifications (managed clusters), "auto" by default
    from redis.maint_notifications import MaintNotificationsConfig

    _POOL_OPTIONS: dict[str, Any] = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
except ImportError:  # older redis-py: the pool always checks a connection before handing it out
    _POOL_OPTIONS = {}

#: connection settings, named as in Dapr's redis components
REDIS_METADATA = (
    MetadataField("redisHost", "HOST:PORT of the Redis server.", default="127.0.0.1:6379", required=True),
    MetadataField("redisUsername", "ACL user name.", default=""),
    MetadataField("redisPassword", "Password.", default="", secret=True),
    MetadataField("redisDB", "Database number.", type=int, default=0, minimum=0, maximum=10000),
    MetadataField("enableTLS", "Connect with TLS.", type=bool, default=False),
    MetadataField(
        "timeoutInSeconds", "Connect and command timeout.", type=float, default=5.0, minimum=0.1, maximum=3600
    ),
    MetadataField("poolSize", "Maximum connections.", type=int, default=32, minimum=1, maximum=10000),
)


class RedisConnection:
    """A pool of connections to one Redis server, shared by one component.

    A connection Redis closed while it sat in the pool (Redis restarted, or its ``timeout``
    closed an idle client) is replaced before a command is written to it: the pool looks for
    end-of-stream on a connection before handing it out. Commands themselves are never retried:
    a command whose answer was lost may have executed (INCRBY, XADD, a compare-and-set script),
    so a failure after it was sent reaches the caller as :class:`BackendUnavailable`.
    redis-py skips that check while maintenance notifications are enabled (recent versions
    default to ``"auto"``), so they are turned off: they concern managed clusters moving nodes.
    """

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
            **_POOL_OPTIONS,
        )
        self._client = aioredis.Redis(connection_pool=pool)
        async with self.errors():
            await self._client.ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def errors(self, operation: str = "PING") -> _RedisErrors:
        """``async with``: map redis-py's errors to the runtime's (BackendUnavailable for a lost or
        timed-out connection, BackendError for an error reply), in a backend span named after
        ``operation``."""
        return _RedisErrors(self, operation)

    async def health(self) -> Health:
        try:
            async with self.errors():
                await self.client.ping()
        except (BackendUnavailable, BackendError) as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)


class _RedisErrors:
    """:meth:`RedisConnection.errors`, as a class: entered on every command, it costs a fraction
    of a generator-based context manager."""

    __slots__ = ("_connection", "_operation", "_span")

    def __init__(self, connection: RedisConnection, operation: str) -> None:
        self._connection, self._operation = connection, operation

    async def __aenter__(self) -> None:
        connection = self._connection
        self._span = backend_span("redis", self._operation, peer=connection._host, port=connection._port)
        self._span.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self._span.__exit__(kind, error, tb)
        if error is None:
            return
        component = self._connection.component
        if isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError)):
            raise BackendUnavailable(component, str(error) or type(error).__name__) from error
        if isinstance(error, RedisError):
            raise BackendError(component, str(error)) from error
