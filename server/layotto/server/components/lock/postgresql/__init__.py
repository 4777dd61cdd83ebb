"""PostgreSQL lock store: a lock table with an expiry column in the database's clock.

Chosen over advisory locks: an advisory lock belongs to a database session, but the
runtime serves many callers over a pool of connections, so ownership would follow the
connection rather than the ``lock_owner``; and advisory locks have no expiry, so a lock
whose holder vanished would only be freed when the server notices the dead connection.
A row per lock gives owner checks, expiry and keep-alive as single statements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import sql

from layotto.server.components.base import (
    KEY_PREFIX,
    ComponentContext,
    ComponentSpec,
    Feature,
    Limits,
    MetadataField,
)
from layotto.server.components.lock import LockStatus, LockStore
from layotto.server.components.postgres_client import POSTGRES_METADATA, PostgresConnection, table_name


class PostgresLockStore(LockStore):
    spec = ComponentSpec(
        type="postgresql",
        building_block="lock",
        description="Locks as rows of a PostgreSQL table with an expiry: shared by every runtime on the database.",
        features=frozenset({Feature.LOCK_KEEP_ALIVE}),
        # the key (with its namespace) in a btree primary key; keys and owners are TEXT (no NUL)
        limits=Limits(max_key_bytes=2692, text_without_nul=True),
        metadata=(
            *POSTGRES_METADATA,
            MetadataField("tableName", "Table holding the locks (created if missing).", default="layotto_locks"),
            KEY_PREFIX,
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pg = self.connect(PostgresConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        table = table_name(str(metadata["tableName"]), f"lock.{self.name}.metadata.tableName")
        self._table = sql.Identifier(table)
        await self._pg.open(metadata)
        await self._pg.create_schema(
            f"layotto-lock-{table}",
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} "
                "(key TEXT PRIMARY KEY, owner TEXT NOT NULL, expire_at TIMESTAMPTZ NOT NULL)"
            ).format(self._table),
        )

    async def try_lock(self, key: str, owner: str, expire_seconds: int) -> bool:
        query = sql.SQL(
            "INSERT INTO {t} (key, owner, expire_at) VALUES (%s, %s, now() + make_interval(secs => %s)) "
            "ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, expire_at = EXCLUDED.expire_at "
            "WHERE {t}.expire_at <= now()"
        ).format(t=self._table)
        async with self._pg.connection() as conn:
            return (await conn.execute(query, (key, owner, expire_seconds))).rowcount == 1

    async def _change(self, change: sql.Composable, key: str, owner: str, args: tuple[Any, ...]) -> LockStatus:
        # the CTE's SELECT sees the table as it was before the change
        query = sql.SQL(
            "WITH changed AS ({change} RETURNING 1) "
            "SELECT (SELECT count(*) FROM changed), (SELECT owner FROM {t} WHERE key = %s AND expire_at > now())"
        ).format(change=change, t=self._table)
        async with self._pg.connection() as conn:
            row = await (await conn.execute(query, (*args, key))).fetchone()
        assert row is not None
        if row[0]:
            return LockStatus.SUCCESS
        return LockStatus.LOCK_UNEXIST if row[1] is None else LockStatus.LOCK_BELONG_TO_OTHERS

    async def unlock(self, key: str, owner: str) -> LockStatus:
        delete = sql.SQL("DELETE FROM {} WHERE key = %s AND owner = %s AND expire_at > now()").format(self._table)
        return await self._change(delete, key, owner, (key, owner))

    async def keep_alive(self, key: str, owner: str, expire_seconds: int) -> LockStatus:
        update = sql.SQL(
            "UPDATE {} SET expire_at = now() + make_interval(secs => %s) "
            "WHERE key = %s AND owner = %s AND expire_at > now()"
        ).format(self._table)
        return await self._change(update, key, owner, (expire_seconds, key, owner))
