"""MySQL / MariaDB state store: the PostgreSQL design on InnoDB.

One table created on first use; etags are random 63-bit numbers drawn per write (a
sequence would need MariaDB-only syntax or a hot counter row), so they are not reused;
TTL is an expiry column in the database's UTC clock, honoured on read and purged in
the background; transactions are real SQL transactions.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiomysql
import pymysql

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Limits, MetadataField
from layotto.server.components.mysql_client import (
    KEY_COLUMN,
    MYSQL_METADATA,
    MysqlConnection,
    migrate_key_column,
    table_name,
)
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
from layotto.server.errors import EtagMismatch

_LIVE = "(expire_at IS NULL OR expire_at > UTC_TIMESTAMP(6))"
_DUPLICATE_KEY = 1062


class MysqlStateStore(StateStore):
    spec = ComponentSpec(
        type="mysql",
        building_block="state",
        description="Keeps state in a MySQL or MariaDB table: shared by every runtime on the same database.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL}),
        # keys: the VARBINARY(700) id column; values: half of the server's default 16 MiB
        # max_allowed_packet, since a value is escaped into its statement (up to twice its size)
        limits=Limits(max_key_bytes=700, max_value_bytes=8_000_000),
        metadata=(
            *MYSQL_METADATA,
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
        self._db = self.connect(MysqlConnection(name))
        self._table = "`state`"
        self._purger = ExpiryPurger()

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        where = f"state.{self.name}.metadata"
        self._table = table_name(str(metadata["tableName"]), f"{where}.tableName")
        await self._db.open(metadata, where)
        async with self._db.cursor() as cur:
            await cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} ("
                f"{KEY_COLUMN}, "
                "value LONGBLOB NOT NULL, etag BIGINT UNSIGNED NOT NULL, expire_at DATETIME(6) NULL, "
                "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), INDEX (expire_at)) ENGINE=InnoDB"
            )
            await migrate_key_column(cur, self._table)
        self._purger.start(float(metadata["cleanupIntervalInSeconds"]), self._purge_expired)

    async def close(self) -> None:
        await self._purger.stop()
        await super().close()

    async def _purge_expired(self) -> None:
        async with self._db.cursor() as cur:
            await cur.execute(f"DELETE FROM {self._table} WHERE expire_at <= UTC_TIMESTAMP(6)")

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
        async with self._db.cursor() as cur:
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
        async with self._db.cursor() as cur:
            await self._apply(cur, request)

    async def delete(self, request: DeleteRequest) -> None:
        async with self._db.cursor() as cur:
            await self._apply(cur, request)

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        async with self._db.cursor(transaction=True) as cur:
            for request in requests:
                await self._apply(cur, request)
