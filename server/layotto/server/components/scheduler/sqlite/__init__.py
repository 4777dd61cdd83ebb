"""SQLite scheduler: embedded and durable, pending items survive a runtime restart.

Statements run on one dedicated thread that owns the connection (the event loop never waits
on disk); a claim is one ``BEGIN IMMEDIATE`` transaction, so runtimes sharing the file (on
one machine) never lease an item twice.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.scheduler import ScheduledItem, Scheduler
from layotto.server.components.sqlite_thread import SqliteThread

T = TypeVar("T")
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    key TEXT PRIMARY KEY,
    due_at REAL NOT NULL,
    payload BLOB NOT NULL,
    leased_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {table}_due ON {table} (due_at);
"""


class SqliteScheduler(Scheduler):
    spec = ComponentSpec(
        type="sqlite",
        building_block="scheduler",
        description="Keeps scheduled items in a SQLite file: durable across restarts, for the runtimes of one machine.",
        metadata=(
            MetadataField(
                "connectionString",
                "Path of the database file; relative paths are under the runtime's data directory.",
                default="scheduler.db",
                example="/var/lib/layotto/scheduler.db",
            ),
            MetadataField("tableName", "Table holding the items.", default="scheduler"),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._db = SqliteThread(name)
        self._table = "scheduler"

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(fn)

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        table = str(metadata["tableName"])
        if not table.isidentifier():
            raise ConfigError(f"scheduler.{self.name}.metadata.tableName: {table!r} is not a valid table name")
        self._table = table
        path = Path(str(metadata["connectionString"]))
        if not path.is_absolute():
            path = context.data_dir / path

        def open_db() -> tuple[sqlite3.Connection, None]:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA.format(table=table))
            return conn, None

        try:
            await self._db.open(open_db)
        except (OSError, sqlite3.Error) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise ConfigError(
                f"scheduler.{self.name}.metadata.connectionString: cannot open {path}: {reason}"
            ) from None
        log.info("scheduler %r keeps its items in %s", self.name, path)

    async def close(self) -> None:
        await self._db.close()

    async def put(self, item: ScheduledItem) -> None:
        sql = (
            f"INSERT INTO {self._table} (key, due_at, payload, leased_until) VALUES (?, ?, ?, 0) "
            "ON CONFLICT(key) DO UPDATE SET due_at=excluded.due_at, payload=excluded.payload, leased_until=0"
        )
        await self._run(lambda c: c.execute(sql, (item.key, item.due_at, item.payload)))

    async def create(self, item: ScheduledItem) -> bool:
        sql = f"INSERT OR IGNORE INTO {self._table} (key, due_at, payload, leased_until) VALUES (?, ?, ?, 0)"
        cursor = await self._run(lambda c: c.execute(sql, (item.key, item.due_at, item.payload)))
        return cursor.rowcount > 0

    async def get(self, key: str) -> ScheduledItem | None:
        sql = f"SELECT key, due_at, payload FROM {self._table} WHERE key = ?"
        row = await self._run(lambda c: c.execute(sql, (key,)).fetchone())
        return None if row is None else ScheduledItem(str(row[0]), float(row[1]), bytes(row[2]))

    async def list_prefix(self, prefix: str) -> list[ScheduledItem]:
        sql = f"SELECT key, due_at, payload FROM {self._table} WHERE substr(key, 1, ?) = ?"
        rows = await self._run(lambda c: c.execute(sql, (len(prefix), prefix)).fetchall())
        return [ScheduledItem(str(key), float(due), bytes(payload)) for key, due, payload in rows]

    async def claim(self, partition: str, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        def claim_due(conn: sqlite3.Connection) -> list[ScheduledItem]:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                f"SELECT key, due_at, payload FROM {self._table} WHERE due_at <= ? AND leased_until <= ? "
                "AND substr(key, 1, ?) = ? ORDER BY due_at LIMIT ?",
                (now, now, len(partition), partition, limit),
            ).fetchall()
            conn.executemany(
                f"UPDATE {self._table} SET leased_until = ? WHERE key = ?", [(now + lease_seconds, r[0]) for r in rows]
            )
            conn.execute("COMMIT")
            return [ScheduledItem(str(key), float(due), bytes(payload)) for key, due, payload in rows]

        return await self._run(claim_due)

    async def ack(self, item: ScheduledItem) -> None:
        sql = f"DELETE FROM {self._table} WHERE key = ? AND due_at = ? AND payload = ?"
        await self._run(lambda c: c.execute(sql, (item.key, item.due_at, item.payload)))

    async def ack_many(self, items: Sequence[ScheduledItem]) -> None:
        """One transaction for the batch."""
        sql = f"DELETE FROM {self._table} WHERE key = ? AND due_at = ? AND payload = ?"
        rows = [(item.key, item.due_at, item.payload) for item in items]

        def delete_all(conn: sqlite3.Connection) -> None:  # on an error, SqliteThread.run rolls back
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")

        await self._run(delete_all)

    async def reschedule(self, claimed: ScheduledItem, following: ScheduledItem) -> bool:
        assert following.key == claimed.key, "an item is rescheduled under its own key"
        sql = (
            f"UPDATE {self._table} SET due_at = ?, payload = ?, leased_until = 0 "
            "WHERE key = ? AND due_at = ? AND payload = ?"
        )
        values = (following.due_at, following.payload, claimed.key, claimed.due_at, claimed.payload)
        cursor = await self._run(lambda c: c.execute(sql, values))
        return cursor.rowcount > 0

    async def delete(self, key: str) -> bool:
        cursor = await self._run(lambda c: c.execute(f"DELETE FROM {self._table} WHERE key = ?", (key,)))
        return cursor.rowcount > 0
