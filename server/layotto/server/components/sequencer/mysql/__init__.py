"""MySQL / MariaDB sequencer: a counter row per key, advanced with LAST_INSERT_ID(expr),
which returns the new value to this connection only, in one statement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import (
    KEY_PREFIX,
    ComponentContext,
    ComponentSpec,
    Feature,
    Limits,
    MetadataField,
)
from layotto.server.components.mysql_client import (
    KEY_COLUMN,
    MYSQL_METADATA,
    MysqlConnection,
    migrate_key_column,
    table_name,
)
from layotto.server.components.sequencer import BIGGER_THAN, SEGMENT_SIZE, Sequencer


class MysqlSequencer(Sequencer):
    spec = ComponentSpec(
        type="mysql",
        building_block="sequencer",
        description="Counters as rows of a MySQL or MariaDB table: durable and shared by every runtime.",
        features=frozenset({Feature.SEQUENCER_SEGMENTS}),
        limits=Limits(max_key_bytes=700),  # the VARBINARY(700) id column (the key with its namespace)
        metadata=(
            *MYSQL_METADATA,
            MetadataField("tableName", "Table holding the counters (created if missing).", default="layotto_sequences"),
            KEY_PREFIX,
            SEGMENT_SIZE,
            BIGGER_THAN,
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._db = self.connect(MysqlConnection(name))
        self._table = "`layotto_sequences`"

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        where = f"sequencer.{self.name}.metadata"
        self._table = table_name(str(metadata["tableName"]), f"{where}.tableName")
        await self._db.open(metadata, where)
        async with self._db.cursor() as cur:
            await cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} ({KEY_COLUMN}, value BIGINT NOT NULL) ENGINE=InnoDB"
            )
            await migrate_key_column(cur, self._table)

    async def next_block(self, key: str, size: int) -> int:
        async with self._db.cursor() as cur:
            await cur.execute(
                f"INSERT INTO {self._table} (id, value) VALUES (%s, LAST_INSERT_ID(%s)) "
                "ON DUPLICATE KEY UPDATE value = LAST_INSERT_ID(value + %s)",
                (key, size, size),
            )
            await cur.execute("SELECT LAST_INSERT_ID()")
            row = await cur.fetchone()
        return int(row[0])
