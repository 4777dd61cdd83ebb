"""SQLite state store: embedded and durable, state survives a runtime restart.

All statements run on one dedicated thread that owns the connection, so the event
loop never blocks on disk I/O and every transaction is serialised. The caller's context
goes along to that thread, so that in a traced request each statement gets a backend span
(``sqlite SELECT``, ..., with the statement), as every other store's do.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from layotto.server.components.base import (
    ComponentContext,
    ComponentSpec,
    ConfigError,
    Feature,
    Health,
    Limits,
    MetadataField,
)
from layotto.server.components.sqlite_thread import SqliteThread
from layotto.server.components.state import (
    DeleteRequest,
    ExpiryPurger,
    SetRequest,
    StateEntry,
    StateStore,
    WriteRequest,
    check_etag,
)
from layotto.server.components.state.query import Query, QueryResult, page_of
from layotto.server.components.state.query_sql import sqlite_select
from layotto.server.errors import BackendError
from layotto.tracing import backend_span, backends_traced, statement_operation

T = TypeVar("T")
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    etag INTEGER NOT NULL,
    expire_at REAL
);
CREATE TABLE IF NOT EXISTS {table}_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO {table}_meta (name, value) VALUES ('last_etag', 0);
"""


class TracedConnection(sqlite3.Connection):
    """A connection whose statements each get a backend span when tracing is on."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if not backends_traced():
            return super().execute(sql, parameters)
        with backend_span("sqlite", statement_operation(sql), statement=sql):
            return super().execute(sql, parameters)


class SqliteStateStore(StateStore):
    spec = ComponentSpec(
        type="sqlite",
        building_block="state",
        description="Keeps state in a SQLite file: durable across restarts, for one runtime at a time.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY}),
        limits=Limits(max_key_bytes=1_000_000_000, max_value_bytes=1_000_000_000),  # SQLITE_MAX_LENGTH
        metadata=(
            MetadataField(
                "connectionString",
                "Path of the database file; relative paths are under the runtime's data directory.",
                default="state.db",
                example="/var/lib/layotto/state.db",
            ),
            MetadataField("tableName", "Table holding the state.", default="state"),
            MetadataField(
                "cleanupIntervalInSeconds",
                "How often expired rows are deleted (reads never return them).",
                type=float,
                default=60.0,
                minimum=0.1,
                maximum=86400,
            ),
            MetadataField(
                "busyTimeoutInSeconds",
                "How long a write waits for a lock on the file.",
                type=float,
                default=5.0,
                minimum=0,
                maximum=3600,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._db = SqliteThread(name)
        self._table = "state"
        self._last_etag = 0
        self._purger = ExpiryPurger()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(fn)

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        table = str(metadata["tableName"])
        if not table.isidentifier():
            raise ConfigError(f"state.{self.name}.metadata.tableName: {table!r} is not a valid table name")
        self._table = table
        path = Path(str(metadata["connectionString"]))
        if not path.is_absolute():
            path = context.data_dir / path

        def open_db() -> tuple[sqlite3.Connection, int]:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=float(metadata["busyTimeoutInSeconds"]), isolation_level=None, factory=TracedConnection
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA.format(table=table))
            row = conn.execute(f"SELECT value FROM {table}_meta WHERE name='last_etag'").fetchone()
            return conn, int(row[0])

        try:
            self._last_etag = await self._db.open(open_db)
        except (OSError, sqlite3.Error) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise ConfigError(f"state.{self.name}.metadata.connectionString: cannot open {path}: {reason}") from error
        log.info(
            "state store %r keeps its data in %s (every runtime given this data directory shares it;"
            " --data-dir or connectionString to choose another)",
            self.name,
            path,
        )
        self._purger.start(float(metadata["cleanupIntervalInSeconds"]), self._purge_expired)

    async def close(self) -> None:
        await self._purger.stop()
        await self._db.close()

    async def health(self) -> Health:
        if self._db.connection is None:
            return Health(up=False, details={"error": "the database is closed"})
        try:
            await self._run(lambda c: c.execute("SELECT 1").fetchone())
        except BackendError as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)

    async def _purge_expired(self) -> None:
        await self._run(lambda c: c.execute(f"DELETE FROM {self._table} WHERE expire_at <= ?", (time.time(),)))

    # -- statements (run on the store's thread) --------------------------------------

    def _current_etag(self, conn: sqlite3.Connection, key: str, now: float) -> int | None:
        row = conn.execute(
            f"SELECT etag FROM {self._table} WHERE key = ? AND (expire_at IS NULL OR expire_at > ?)", (key, now)
        ).fetchone()
        return None if row is None else int(row[0])

    def _apply(self, conn: sqlite3.Connection, request: WriteRequest, now: float) -> None:
        if isinstance(request, DeleteRequest):
            conn.execute(f"DELETE FROM {self._table} WHERE key = ?", (request.key,))
            return
        self._last_etag += 1
        expire_at = None if request.ttl_seconds is None else now + request.ttl_seconds
        conn.execute(
            f"INSERT INTO {self._table} (key, value, etag, expire_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value, etag=excluded.etag, expire_at=excluded.expire_at",
            (request.key, request.value, self._last_etag, expire_at),
        )

    def _write_all(self, conn: sqlite3.Connection, requests: Sequence[WriteRequest]) -> None:
        now = time.time()
        last_etag = self._last_etag
        conn.execute("BEGIN IMMEDIATE")
        try:
            after: dict[str, int | None] = {}
            for request in requests:
                current = after[request.key] if request.key in after else self._current_etag(conn, request.key, now)
                check_etag(request, current)
                self._apply(conn, request, now)
                after[request.key] = None if isinstance(request, DeleteRequest) else self._last_etag
            conn.execute(f"UPDATE {self._table}_meta SET value = ? WHERE name = 'last_etag'", (self._last_etag,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._last_etag = last_etag
            raise

    # -- the StateStore interface -----------------------------------------------------

    async def get(self, key: str) -> StateEntry | None:
        now = time.time()
        row = await self._run(
            lambda c: c.execute(
                f"SELECT value, etag, expire_at FROM {self._table} "
                "WHERE key = ? AND (expire_at IS NULL OR expire_at > ?)",
                (key, now),
            ).fetchone()
        )
        if row is None:
            return None
        return StateEntry(key, bytes(row[0]), str(row[1]), row[2])

    async def set(self, request: SetRequest) -> None:
        await self._run(lambda c: self._write_all(c, [request]))

    async def delete(self, request: DeleteRequest) -> None:
        await self._run(lambda c: self._write_all(c, [request]))

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        await self._run(lambda c: self._write_all(c, requests))

    async def query(self, query: Query) -> QueryResult:
        statement, params = sqlite_select(self._table, query, time.time())
        rows = await self._run(lambda c: c.execute(statement, params).fetchall())
        return page_of([StateEntry(row[0], bytes(row[1]), str(row[2]), row[3]) for row in rows], query)
