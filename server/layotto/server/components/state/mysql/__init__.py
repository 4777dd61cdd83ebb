"""MySQL / MariaDB state store: the PostgreSQL design on InnoDB.

One table created on first use; etags are random 63-bit numbers drawn per write (a
sequence would need MariaDB-only syntax or a hot counter row), so they are not reused;
TTL is an expiry column in the database's UTC clock, honoured on read and purged in
the background; transactions are real SQL transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import aiomysql
import pymysql

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

_LIVE = "(expire_at IS NULL OR expire_at > UTC_TIMESTAMP(6))"
_DUPLICATE_KEY = 1062
_CONNECTION_ERRORS = {2003, 2006, 2013, 2055}
_GO_DSN = re.compile(
    r"^(?P<user>[^:@]*)(?::(?P<password>[^@]*))?@tcp\((?P<host>[^:)]+)(?::(?P<port>\d+))?\)/(?P<db>[^?]*)"
)


def parse_connection_string(value: str) -> dict[str, Any]:
    """Dapr's Go DSN (user:pass@tcp(host:port)/db) or a mysql:// URL, as aiomysql arguments."""
    match = _GO_DSN.match(value)
    if match:
        return {
            "user": match["user"],
            "password": match["password"] or "",
            "host": match["host"],
            "port": int(match["port"] or 3306),
            "db": match["db"],
        }
    url = urlparse(value)
    if url.scheme in ("mysql", "mariadb") and url.hostname:
        return {
            "user": unquote(url.username or ""),
            "password": unquote(url.password or ""),
            "host": url.hostname,
            "port": url.port or 3306,
            "db": url.path.lstrip("/"),
        }
    raise ValueError("expected user:password@tcp(host:port)/database or mysql://user:password@host:port/database")


class MysqlStateStore(StateStore):
    spec = ComponentSpec(
        type="mysql",
        building_block="state",
        description="Keeps state in a MySQL or MariaDB table: shared by every runtime on the same database.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL}),
        metadata=(
            MetadataField(
                "connectionString",
                "Go-style DSN as in Dapr (user:password@tcp(host:port)/database) or a mysql:// URL.",
                required=True,
                example="layotto:layotto@tcp(127.0.0.1:3306)/layotto",
            ),
            MetadataField("tableName", "Table holding the state (created if missing).", default="state"),
            MetadataField("timeoutInSeconds", "Longest wait for a connection or a statement.", type=float, default=5.0),
            MetadataField("maxConns", "Maximum connections in the pool.", type=int, default=16),
            MetadataField("cleanupIntervalInSeconds", "How often expired rows are deleted.", type=float, default=60.0),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pool: aiomysql.Pool | None = None
        self._timeout = 5.0
        self._table = "state"
        self._cleanup: asyncio.Task[None] | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        where = f"state.{self.name}.metadata"
        table = str(metadata["tableName"])
        if not table.replace("_", "").isalnum():
            raise ConfigError(f"{where}.tableName: {table!r} must be letters, digits and _")
        try:
            params = parse_connection_string(str(metadata["connectionString"]))
        except ValueError as error:
            raise ConfigError(f"{where}.connectionString: {error}") from None
        self._table = f"`{table}`"
        self._timeout = float(metadata["timeoutInSeconds"])
        try:
            self._pool = await asyncio.wait_for(
                aiomysql.create_pool(
                    minsize=1,
                    maxsize=int(metadata["maxConns"]),
                    autocommit=True,
                    connect_timeout=self._timeout,
                    pool_recycle=300,
                    **params,
                ),
                self._timeout,
            )
        except (TimeoutError, pymysql.err.OperationalError, OSError) as error:
            raise BackendUnavailable(self.name, f"cannot connect: {error}") from error
        async with self._cursor() as cur:
            await cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} ("
                "id VARCHAR(700) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, "
                "value LONGBLOB NOT NULL, etag BIGINT UNSIGNED NOT NULL, expire_at DATETIME(6) NULL, "
                "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), INDEX (expire_at)) ENGINE=InnoDB"
            )
        self._cleanup = asyncio.create_task(self._purge_expired(float(metadata["cleanupIntervalInSeconds"])))

    async def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()

    async def _purge_expired(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(BackendUnavailable, BackendError):
                async with self._cursor() as cur:
                    await cur.execute(f"DELETE FROM {self._table} WHERE expire_at <= UTC_TIMESTAMP(6)")

    @contextlib.asynccontextmanager
    async def _cursor(self, transaction: bool = False) -> AsyncIterator[aiomysql.Cursor]:
        assert self._pool is not None
        try:
            conn = await asyncio.wait_for(self._pool.acquire(), self._timeout)
        except (TimeoutError, pymysql.err.OperationalError, OSError) as error:
            raise BackendUnavailable(self.name, f"no connection within {self._timeout}s: {error}") from error
        try:
            async with conn.cursor() as cur:
                if transaction:
                    await conn.begin()
                try:
                    yield cur
                    if transaction:
                        await conn.commit()
                except BaseException:
                    if transaction:
                        with contextlib.suppress(Exception):
                            await conn.rollback()
                    raise
        except pymysql.err.OperationalError as error:
            conn.close()  # the connection may be broken: never hand it out again
            if error.args and error.args[0] in _CONNECTION_ERRORS:
                raise BackendUnavailable(self.name, str(error)) from error
            raise BackendError(self.name, str(error)) from error
        except pymysql.err.MySQLError as error:
            raise BackendError(self.name, str(error)) from error
        finally:
            self._pool.release(conn)

    async def health(self) -> Health:
        try:
            async with self._cursor() as cur:
                await cur.execute("SELECT 1")
        except (BackendUnavailable, BackendError) as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)

    # -- statements ------------------------------------------------------------------

    async def _apply(self, cur: aiomysql.Cursor, request: WriteRequest) -> None:
        etag, table = parse_etag(request), self._table
        if isinstance(request, DeleteRequest):
            if etag is None:
                await cur.execute(f"DELETE FROM {table} WHERE id = %s", (request.key,))
            elif (
                await cur.execute(f"DELETE FROM {table} WHERE id = %s AND etag = %s AND {_LIVE}", (request.key, etag))
                == 0
            ):
                raise EtagMismatch(request.key)
            return
        new_etag = secrets.randbits(63)
        expire = "TIMESTAMPADD(MICROSECOND, %s, UTC_TIMESTAMP(6))" if request.ttl_seconds else "%s"
        expire_arg = request.ttl_seconds * 1_000_000 if request.ttl_seconds else None
        if etag is not None:
            changed = await cur.execute(
                f"UPDATE {table} SET value = %s, etag = %s, expire_at = {expire}, updated_at = UTC_TIMESTAMP(6) "
                f"WHERE id = %s AND etag = %s AND {_LIVE}",
                (request.value, new_etag, expire_arg, request.key, etag),
            )
            if changed == 0:
                raise EtagMismatch(request.key)
            return
        insert = f"INSERT INTO {table} (id, value, etag, expire_at) VALUES (%s, %s, %s, {expire})"
        args = (request.key, request.value, new_etag, expire_arg)
        if request.concurrency is Concurrency.FIRST_WRITE:
            await cur.execute(f"DELETE FROM {table} WHERE id = %s AND expire_at <= UTC_TIMESTAMP(6)", (request.key,))
            try:
                await cur.execute(insert, args)
            except pymysql.err.IntegrityError as error:
                if error.args and error.args[0] == _DUPLICATE_KEY:
                    raise EtagMismatch(request.key) from None
                raise
            return
        await cur.execute(
            insert + " ON DUPLICATE KEY UPDATE value = VALUES(value), etag = VALUES(etag), "
            "expire_at = VALUES(expire_at), updated_at = UTC_TIMESTAMP(6)",
            args,
        )

    # -- the StateStore interface ------------------------------------------------------

    async def get(self, key: str) -> StateEntry | None:
        async with self._cursor() as cur:
            await cur.execute(
                f"SELECT value, etag, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expire_at) FROM {self._table} "
                f"WHERE id = %s AND {_LIVE}",
                (key,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        remaining = None if row[2] is None else int(row[2]) / 1_000_000
        expire_at = None if remaining is None else time.time() + remaining
        return StateEntry(key, bytes(row[0]), str(row[1]), expire_at)

    async def set(self, request: SetRequest) -> None:
        async with self._cursor() as cur:
            await self._apply(cur, request)

    async def delete(self, request: DeleteRequest) -> None:
        async with self._cursor() as cur:
            await self._apply(cur, request)

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        async with self._cursor(transaction=True) as cur:
            for request in requests:
                await self._apply(cur, request)
