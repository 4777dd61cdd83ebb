"""PostgreSQL state store: one table (created on first use), etags from a sequence so
they are never reused, TTL as an expiry column honoured on read and purged in the
background, transactions as real SQL transactions. Expiry uses the database's clock,
so runtimes with skewed clocks agree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Limits, MetadataField
from layotto.server.components.postgres_client import POSTGRES_METADATA, PostgresConnection, table_name
from layotto.server.components.state import (
    Concurrency,
    DeleteRequest,
    ExpiryPurger,
    SetRequest,
    StateEntry,
    StateStore,
    WriteRequest,
    parse_etag,
)
from layotto.server.components.state.query import Query, QueryResult, page_of
from layotto.server.components.state.query_postgresql import PG_TRY_JSONB, pg_select
from layotto.server.errors import EtagMismatch

_LIVE = "(expire_at IS NULL OR expire_at > now())"


class PostgresStateStore(StateStore):
    spec = ComponentSpec(
        type="postgresql",
        building_block="state",
        description="Keeps state in a PostgreSQL table: shared by every runtime that points at the same database.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY}),
        # keys: a primary-key btree entry holds at most 2704 bytes, 12 of them its headers; TEXT (no NUL)
        limits=Limits(max_key_bytes=2692, text_without_nul=True),
        metadata=(
            *POSTGRES_METADATA,
            MetadataField("tableName", "Table holding the state (created if missing).", default="state"),
            MetadataField(
                "cleanupIntervalInSeconds",
                "How often expired rows are deleted.",
                type=float,
                default=60.0,
                minimum=0.1,
                maximum=86400,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pg = self.connect(PostgresConnection(name))
        self._purger = ExpiryPurger()

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        table = table_name(str(metadata["tableName"]), f"state.{self.name}.metadata.tableName")
        self._table = sql.Identifier(table)
        self._seq_name = f"{table}_etag_seq"
        await self._pg.open(metadata)
        await self._pg.create_schema(
            f"layotto-state-{table}",
            sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(sql.Identifier(self._seq_name)),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value BYTEA NOT NULL, "
                "etag BIGINT NOT NULL, expire_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ).format(self._table),
        )
        await self._pg.create_schema("layotto-try-jsonb", PG_TRY_JSONB)
        self._purger.start(float(metadata["cleanupIntervalInSeconds"]), self._purge_expired)

    async def close(self) -> None:
        await self._purger.stop()
        await super().close()

    async def _purge_expired(self) -> None:
        async with self._pg.connection() as conn:
            await conn.execute(sql.SQL("DELETE FROM {} WHERE expire_at <= now()").format(self._table))

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
        async with self._pg.connection() as conn:
            row = await (await conn.execute(query.format(self._table), (key,))).fetchone()
        if row is None:
            return None
        return StateEntry(key, bytes(row[0]), str(row[1]), None if row[2] is None else float(row[2]))

    async def set(self, request: SetRequest) -> None:
        async with self._pg.connection() as conn:
            await self._apply(conn, request)

    async def delete(self, request: DeleteRequest) -> None:
        async with self._pg.connection() as conn:
            await self._apply(conn, request)

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        async with self._pg.connection() as conn, conn.transaction():
            for request in requests:
                await self._apply(conn, request)

    async def query(self, query: Query) -> QueryResult:
        statement, params = pg_select(self._table, _LIVE, query)
        async with self._pg.connection() as conn:
            rows = await (await conn.execute(statement, params)).fetchall()
        entries = [StateEntry(r[0], bytes(r[1]), str(r[2]), None if r[3] is None else float(r[3])) for r in rows]
        return page_of(entries, query)
