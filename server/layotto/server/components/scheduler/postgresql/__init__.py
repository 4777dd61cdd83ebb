"""PostgreSQL scheduler: one table shared by every runtime on the database.

Each row is an item (its key, partition, due time, payload and lease end). A claim is one
``UPDATE … WHERE key IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``: runtimes claiming at
once skip each other's rows instead of waiting, and never lease one item twice. Acknowledging
(one DELETE per batch) and rescheduling compare the row with the claimed item in the same statement. Due times and
leases are the runtimes' clocks (epoch seconds): keep them in sync (NTP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import sql

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, MetadataField
from layotto.server.components.postgres_client import POSTGRES_METADATA, PostgresConnection, table_name
from layotto.server.components.scheduler import ScheduledItem, Scheduler, partition_of

_CLAIM = (
    "UPDATE {t} SET leased_until = %(until)s WHERE key IN ("
    "SELECT key FROM {t} WHERE partition = %(partition)s AND due_at <= %(now)s AND leased_until <= %(now)s "
    "ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING key, due_at, payload"
)


def _item(row: tuple[Any, ...]) -> ScheduledItem:
    return ScheduledItem(str(row[0]), float(row[1]), bytes(row[2]))


class PostgresScheduler(Scheduler):
    spec = ComponentSpec(
        type="postgresql",
        building_block="scheduler",
        features=frozenset({Feature.SHARED}),
        description="Scheduled items in a PostgreSQL table, claimed with FOR UPDATE SKIP LOCKED: shared by every "
        "runtime on the same database, each item fired by one of them, durable across restarts.",
        metadata=(
            *POSTGRES_METADATA,
            MetadataField("tableName", "Table holding the items (created if missing).", default="scheduler"),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pg = self.connect(PostgresConnection(name))
        self._table = sql.Identifier("scheduler")

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        table = table_name(str(metadata["tableName"]), f"scheduler.{self.name}.metadata.tableName")
        self._table = sql.Identifier(table)
        await self._pg.open(metadata)
        await self._pg.create_schema(
            f"layotto-scheduler-{table}",
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, partition TEXT NOT NULL, "
                "due_at DOUBLE PRECISION NOT NULL, payload BYTEA NOT NULL, leased_until DOUBLE PRECISION NOT NULL "
                "DEFAULT 0)"
            ).format(self._table),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (partition, due_at)").format(
                sql.Identifier(f"{table}_due"), self._table
            ),
        )

    async def _execute(self, statement: str, params: Mapping[str, Any]) -> tuple[int, list[tuple[Any, ...]]]:
        """Run one statement; its row count and the rows it returned."""
        query = sql.SQL(statement).format(t=self._table)
        async with self._pg.connection() as conn:
            cursor = await conn.execute(query, params)
            rows = await cursor.fetchall() if cursor.description else []
            return cursor.rowcount, rows

    async def put(self, item: ScheduledItem) -> None:
        await self._execute(
            "INSERT INTO {t} (key, partition, due_at, payload, leased_until) "
            "VALUES (%(key)s, %(partition)s, %(due)s, %(payload)s, 0) ON CONFLICT (key) DO UPDATE SET "
            "due_at = excluded.due_at, payload = excluded.payload, leased_until = 0",
            self._row(item),
        )

    async def create(self, item: ScheduledItem) -> bool:
        count, _ = await self._execute(
            "INSERT INTO {t} (key, partition, due_at, payload) VALUES (%(key)s, %(partition)s, %(due)s, %(payload)s) "
            "ON CONFLICT (key) DO NOTHING",
            self._row(item),
        )
        return count > 0

    async def get(self, key: str) -> ScheduledItem | None:
        _, rows = await self._execute("SELECT key, due_at, payload FROM {t} WHERE key = %(key)s", {"key": key})
        return _item(rows[0]) if rows else None

    async def list_prefix(self, prefix: str) -> list[ScheduledItem]:
        _, rows = await self._execute(
            "SELECT key, due_at, payload FROM {t} WHERE partition = %(partition)s "
            "AND left(key, %(length)s) = %(prefix)s",
            {"partition": partition_of(prefix), "length": len(prefix), "prefix": prefix},
        )
        return [_item(row) for row in rows]

    async def claim(self, partition: str, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        params = {"until": now + lease_seconds, "partition": partition, "now": now, "limit": limit}
        _, rows = await self._execute(_CLAIM, params)
        return sorted((_item(row) for row in rows), key=lambda item: item.due_at)

    async def ack(self, item: ScheduledItem) -> None:
        await self._execute(
            "DELETE FROM {t} WHERE key = %(key)s AND due_at = %(due)s AND payload = %(payload)s", self._row(item)
        )

    async def ack_many(self, items: Sequence[ScheduledItem]) -> None:
        """One DELETE for the batch, each row compared with its claimed item."""
        if not items:
            return
        await self._execute(
            "DELETE FROM {t} AS s USING unnest(%(keys)s::text[], %(dues)s::float8[], %(payloads)s::bytea[]) "
            "AS a(key, due_at, payload) WHERE s.key = a.key AND s.due_at = a.due_at AND s.payload = a.payload",
            {
                "keys": [item.key for item in items],
                "dues": [item.due_at for item in items],
                "payloads": [item.payload for item in items],
            },
        )

    async def reschedule(self, claimed: ScheduledItem, following: ScheduledItem) -> bool:
        assert following.key == claimed.key, "an item is rescheduled under its own key"
        count, _ = await self._execute(
            "UPDATE {t} SET due_at = %(next_due)s, payload = %(next_payload)s, leased_until = 0 "
            "WHERE key = %(key)s AND due_at = %(due)s AND payload = %(payload)s",
            {**self._row(claimed), "next_due": following.due_at, "next_payload": following.payload},
        )
        return count > 0

    async def delete(self, key: str) -> bool:
        count, _ = await self._execute("DELETE FROM {t} WHERE key = %(key)s", {"key": key})
        return count > 0

    @staticmethod
    def _row(item: ScheduledItem) -> dict[str, Any]:
        return {"key": item.key, "partition": partition_of(item.key), "due": item.due_at, "payload": item.payload}
