"""One SQLite connection used from one thread of its own, shared by every SQLite-backed component.

SQLite calls block, so a component runs them on a single-worker executor: statements of one
component are serialised, the event loop never waits on the file. :meth:`SqliteThread.run`
carries the caller's context (the current span, for traced statements), rolls back a failed
transaction and raises :class:`BackendError` naming the component for any ``sqlite3.Error``.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from layotto.server.errors import BackendError

T = TypeVar("T")


class SqliteThread:
    """The connection (None until :meth:`open`, again after :meth:`close`) and the thread it is used on."""

    def __init__(self, component: str) -> None:
        self._component = component
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{component}")
        self.connection: sqlite3.Connection | None = None

    async def open(self, connect: Callable[[], tuple[sqlite3.Connection, T]]) -> T:
        """Runs ``connect`` on the thread; keeps the connection it makes and answers what else it returns.
        Its ``OSError`` / ``sqlite3.Error`` reach the caller as they are (a configuration error there)."""

        def opened() -> T:
            self.connection, result = connect()
            return result

        return await asyncio.get_running_loop().run_in_executor(self._executor, opened)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the thread, in the caller's context; BackendError on a sqlite3.Error."""

        def call() -> T:
            conn = self.connection
            assert conn is not None
            try:
                return fn(conn)
            except sqlite3.Error as error:
                if conn.in_transaction:
                    conn.rollback()
                raise BackendError(self._component, str(error)) from error

        context = contextvars.copy_context()  # the current span, for the statements' spans
        return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, call)

    async def close(self) -> None:
        """Closes the connection (if open) and ends the thread."""
        if self.connection is not None:
            conn, self.connection = self.connection, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
