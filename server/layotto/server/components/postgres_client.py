"""The PostgreSQL connection pool shared by the PostgreSQL components, with error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from layotto.server.components.base import ConfigError, Health, MetadataField
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span, backends_traced, statement_operation

POSTGRES_METADATA = (
    MetadataField(
        "connectionString",
        "libpq connection string or URL.",
        required=True,
        example="host=127.0.0.1 user=layotto password=layotto dbname=layotto",
    ),
    MetadataField(
        "timeoutInSeconds",
        "Longest wait for a connection or a statement.",
        type=float,
        default=5.0,
        minimum=0.1,
        maximum=3600,
    ),
    MetadataField("maxConns", "Maximum connections in the pool.", type=int, default=16, minimum=1, maximum=1000),
)


class TracedCursor(psycopg.AsyncCursor[Any]):
    """A cursor whose statements each get a backend span when tracing is on."""

    async def execute(self, query: Any, params: Any = None, **options: Any) -> TracedCursor:
        if not backends_traced():
            await super().execute(query, params, **options)
            return self
        text = query if isinstance(query, str) else query.decode() if isinstance(query, bytes) else str(query)
        info = self.connection.info
        with backend_span("postgresql", statement_operation(text), statement=text, peer=info.host, port=info.port):
            await super().execute(query, params, **options)
        return self


def one_line(error: BaseException) -> str:
    """An error's message with its lines (libpq adds hints on their own lines) joined."""
    return " ".join(str(error).split())


def table_name(value: str, where: str) -> str:
    if not value.replace("_", "").isalnum() or value != value.lower():
        raise ConfigError(f"{where}: {value!r} must be lower-case letters, digits and _")
    return value


class PostgresConnection:
    def __init__(self, component: str) -> None:
        self.component = component
        self.timeout = 5.0
        self._pool: AsyncConnectionPool | None = None

    async def open(self, metadata: Mapping[str, Any]) -> None:
        """Connect once directly, then open the pool. Raises BackendUnavailable with the
        server's or libpq's own reason in one line (a bad ``sslmode``, a refused port, a wrong
        password) rather than the pool's timeout, and before the pool logs its retries."""
        self.timeout = float(metadata["timeoutInSeconds"])
        conninfo = str(metadata["connectionString"])
        await self._probe(conninfo)
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=int(metadata["maxConns"]),
            timeout=self.timeout,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, int(self.timeout)),
                "cursor_factory": TracedCursor,
            },
            open=False,
            reconnect_timeout=0,
        )
        try:
            await self._pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout as error:
            raise BackendUnavailable(self.component, f"cannot connect: {error}") from error

    async def _probe(self, conninfo: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                connection = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, connect_timeout=max(1, int(self.timeout))
                )
        except TimeoutError:
            raise BackendUnavailable(self.component, f"cannot connect within {self.timeout:g}s") from None
        except psycopg.Error as error:
            raise BackendUnavailable(self.component, f"cannot connect: {one_line(error)}") from None
        await connection.close()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        assert self._pool is not None, "open() first"
        try:
            async with self._pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout as error:
            raise BackendUnavailable(self.component, f"no connection within {self.timeout}s: {error}") from error
        except psycopg.OperationalError as error:
            raise BackendUnavailable(self.component, str(error).strip()) from error
        except psycopg.Error as error:
            raise BackendError(self.component, str(error).strip()) from error

    async def create_schema(self, lock_name: str, *statements: Any) -> None:
        """Run CREATE … IF NOT EXISTS statements, serialised across runtimes starting at once."""
        async with self.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_name,))
            for statement in statements:
                await conn.execute(statement)

    async def health(self) -> Health:
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
        except (BackendUnavailable, BackendError) as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)
