"""PostgreSQL sequencer: a counter row per key, advanced by one upsert that returns it."""

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
from layotto.server.components.postgres_client import POSTGRES_METADATA, PostgresConnection, table_name
from layotto.server.components.sequencer import BIGGER_THAN, SEGMENT_SIZE, Sequencer


class PostgresSequencer(Sequencer):
    spec = ComponentSpec(
        type="postgresql",
        building_block="sequencer",
        description="Counters as rows of a PostgreSQL table: durable and shared by every runtime on the database.",
        features=frozenset({Feature.SEQUENCER_SEGMENTS}),
        # the key (with its namespace) in a btree primary key; TEXT columns (no NUL)
        limits=Limits(max_key_bytes=2692, text_without_nul=True),
        metadata=(
            *POSTGRES_METADATA,
            MetadataField("tableName", "Table holding the counters (created if missing).", default="layotto_sequences"),
            KEY_PREFIX,
            SEGMENT_SIZE,
            BIGGER_THAN,
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pg = self.connect(PostgresConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        table = table_name(str(metadata["tableName"]), f"sequencer.{self.name}.metadata.tableName")
        self._table = sql.Identifier(table)
        await self._pg.open(metadata)
        await self._pg.create_schema(
            f"layotto-sequencer-{table}",
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value BIGINT NOT NULL)").format(self._table),
        )

    async def next_block(self, key: str, size: int) -> int:
        query = sql.SQL(
            "INSERT INTO {t} (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = {t}.value + EXCLUDED.value RETURNING value"
        ).format(t=self._table)
        async with self._pg.connection() as conn:
            row = await (await conn.execute(query, (key, size))).fetchone()
        assert row is not None
        return int(row[0])
