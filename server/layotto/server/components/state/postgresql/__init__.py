"""PostgreSQL state store: one table (created on first use), etags from a sequence so
they are never reused, TTL as an expiry column honoured on read and purged in the
background, transactions as real SQL transactions. Expiry uses the database's clock,
so runtimes with skewed clocks agree."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, Feature, Health, MetadataField
from layotto.server.components.state import (
    Concurrency,
    DeleteRequest,
    SetRequest,
    StateEntry,
    StateStore,
    WriteRequest,
    parse_etag,
)
from layotto.server.errors import BackendError, BackendUnavailable, EtagMismatch

_LIVE = "(expire_at IS NULL OR expire_at > now())"


class PostgresStateStore(StateStore):
    spec = ComponentSpec(
        type="postgresql",
        building_block="state",
        description="Keeps state in a PostgreSQL table: shared by every runtime that points at the same database.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL}),
        metadata=(
            MetadataField(
                "connectionString",
                "libpq connection string or URL.",
                required=True,
                example="host=127.0.0.1 user=layotto password=layotto dbname=layotto",
            ),
            MetadataField("tableName", "Table holding the state (created if missing).", default="state"),
            MetadataField("timeoutInSeconds", "Longest wait for a connection or a statement.", type=float, default=5.0),
            MetadataField("maxConns", "Maximum connections in the pool.", type=int, default=16),
            MetadataField("cleanupIntervalInSeconds", "How often expired rows are deleted.", type=float, default=60.0),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pool: AsyncConnectionPool | None = None
        self._timeout = 5.0
        self._cleanup: asyncio.Task[None] | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        table = str(metadata["tableName"])
        if not table.replace("_", "").isalnum() or table != table.lower():
            raise ConfigError(
                f"state.{self.name}.metadata.tableName: {table!r} must be lower-case letters, digits and _"
            )
        self._table = sql.Identifier(table)
        self._seq_name = f"{table}_etag_seq"
        self._seq = sql.Identifier(self._seq_name)
        self._timeout = float(metadata["timeoutInSeconds"])
        self._pool = AsyncConnectionPool(
            str(metadata["connectionString"]),
            min_size=1,
            max_size=int(metadata["maxConns"]),
            timeout=self._timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(self._timeout))},
            open=False,
            reconnect_timeout=0,
        )
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout as error:
            raise BackendUnavailable(self.name, f"cannot connect: {error}") from error
        await self._create_schema(table)
        self._cleanup = asyncio.create_task(self._purge_expired(float(metadata["cleanupIntervalInSeconds"])))

    async def _create_schema(self, table: str) -> None:
        async with self._connection() as conn, conn.transaction():
            # several runtimes may start at once: serialise schema creation
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"layotto-state-{table}",))
            await conn.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(self._seq))
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value BYTEA NOT NULL, "
                    "etag BIGINT NOT NULL, expire_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ).format(self._table)
            )

    async def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
        if self._pool is not None:
            await self._pool.close()

    async def _purge_expired(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(BackendUnavailable, BackendError):
                async with self._connection() as conn:
                    await conn.execute(sql.SQL("DELETE FROM {} WHERE expire_at <= now()").format(self._table))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        assert self._pool is not None
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                yield conn
        except PoolTimeout as error:
            raise BackendUnavailable(self.name, f"no connection within {self._timeout}s: {error}") from error
        except psycopg.OperationalError as error:
            raise BackendUnavailable(self.name, str(error).strip()) from error
        except psycopg.Error as error:
            raise BackendError(self.name, str(error).strip()) from error

    async def health(self) -> Health:
        try:
            async with self._connection() as conn:
                await conn.execute("SELECT 1")
        except (BackendUnavailable, BackendError) as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)

    # -- statements ------------------------------------------------------------------

    async def _apply(self, conn: psycopg.AsyncConnection[Any], request: WriteRequest) -> None:
        etag = parse_etag(request)
        table = self._table
        if isinstance(request, DeleteRequest):
            if etag is None:
                await conn.execute(sql.SQL("DELETE FROM {} WHERE key = %s").format(table), (request.key,))
                return
            query = sql.SQL("DELETE FROM {} WHERE key = %s AND etag = %s AND " + _LIVE).format(table)
            if (await conn.execute(query, (request.key, etag))).rowcount == 0:
                raise EtagMismatch(request.key)
            return
        expire = (
            sql.SQL("now() + make_interval(secs => {})").format(sql.Literal(request.ttl_seconds))
            if request.ttl_seconds
            else sql.SQL("NULL")
        )
        names = {"t": table, "s": sql.Literal(f"{self._seq_name}"), "expire": expire}
        if etag is not None:
            query = sql.SQL(
                "UPDATE {t} SET value = %s, etag = nextval({s}), expire_at = {expire}, updated_at = now() "
                "WHERE key = %s AND etag = %s AND " + _LIVE
            ).format(**names)
            if (await conn.execute(query, (request.value, request.key, etag))).rowcount == 0:
                raise EtagMismatch(request.key)
            return
        # first-write may only replace a row that has expired
        only_expired = "WHERE {t}.expire_at <= now()" if request.concurrency is Concurrency.FIRST_WRITE else ""
        query = sql.SQL(
            "INSERT INTO {t} (key, value, etag, expire_at) VALUES (%s, %s, nextval({s}), {expire}) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, etag = EXCLUDED.etag, "
            "expire_at = EXCLUDED.expire_at, updated_at = now() " + only_expired
        ).format(**names)
        if (await conn.execute(query, (request.key, request.value))).rowcount == 0:
            raise EtagMismatch(request.key)

    # -- the StateStore interface ------------------------------------------------------

    async def get(self, key: str) -> StateEntry | None:
        query = sql.SQL("SELECT value, etag, extract(epoch FROM expire_at) FROM {} WHERE key = %s AND " + _LIVE)
        async with self._connection() as conn:
            row = await (await conn.execute(query.format(self._table), (key,))).fetchone()
        if row is None:
            return None
        return StateEntry(key, bytes(row[0]), str(row[1]), None if row[2] is None else float(row[2]))

    async def set(self, request: SetRequest) -> None:
        async with self._connection() as conn:
            await self._apply(conn, request)

    async def delete(self, request: DeleteRequest) -> None:
        async with self._connection() as conn:
            await self._apply(conn, request)

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        async with self._connection() as conn, conn.transaction():
            for request in requests:
                await self._apply(conn, request)
