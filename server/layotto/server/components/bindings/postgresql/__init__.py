"""Dapr's ``bindings.postgresql`` output binding: exec, query and close.

The request's ``sql`` metadata is the statement, with PostgreSQL's own ``$1, $2, ...``
placeholders (as with Dapr's pgx); ``params`` (a JSON array) holds their values, sent as bind
parameters. ``query`` answers the rows as a JSON array of arrays; ``exec`` answers
``rows-affected`` in the response metadata.

With ``channel`` set it is also an input binding (Layotto's own: Dapr has none on PostgreSQL):
it LISTENs on the channel over a connection of its own and delivers each NOTIFY's payload, with
the metadata ``channel`` and ``pid`` (the notifying backend's). Delivery is at most once:
PostgreSQL keeps no notification for a listener that is not connected, so what is notified
while the runtime is down or reconnecting, or what the app fails to take, is not delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import psycopg
from psycopg import sql

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, Feature, MetadataField
from layotto.server.components.bindings import (
    BindingEvent,
    BindingRequest,
    BindingResponse,
    EventHandler,
    InputBinding,
    OutputBinding,
)
from layotto.server.components.bindings.sql import (
    MAX_RESULT_BYTES,
    SQL_OPERATIONS,
    RowsJson,
    closed,
    sql_call,
    sql_response,
)
from layotto.server.components.postgres_client import POSTGRES_METADATA, PostgresConnection, TracedCursor
from layotto.server.errors import BackendUnavailable, InvalidArgument
from layotto.tracing import backend_span, statement_operation

log = logging.getLogger(__name__)


class _TracedRawCursor(psycopg.AsyncRawCursor[Any], TracedCursor):
    """PostgreSQL's own $n placeholders (as Dapr's pgx takes them), each statement in a backend span."""


RECONNECT_SECONDS = 1.0
#: the longest channel name (an identifier: NAMEDATALEN - 1)
MAX_CHANNEL_BYTES = 63


class PostgresBinding(OutputBinding, InputBinding):
    spec = ComponentSpec(
        type="postgresql",
        building_block="bindings",
        description="Runs the request's SQL statement with its parameters ($1, $2, ... bound from the params "
        "JSON array) on PostgreSQL: exec answers the rows affected, query the rows as JSON arrays. With "
        "channel, also an input binding delivering each NOTIFY on it, at most once.",
        features=frozenset({Feature.OUTPUT_BINDING, Feature.INPUT_BINDING}),
        operations=SQL_OPERATIONS,
        metadata=(
            *POSTGRES_METADATA,
            MetadataField("channel", "Input: the channel to LISTEN on (empty: no input).", default=""),
            MAX_RESULT_BYTES,
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._postgres = PostgresConnection(name)
        self._closed = False
        self._dsn = ""
        self._channel = ""
        self._max_result = int(MAX_RESULT_BYTES.default)

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._dsn = str(metadata["connectionString"])
        self._channel = str(metadata["channel"])
        if len(self._channel.encode()) > MAX_CHANNEL_BYTES:  # LISTEN would truncate it; pg_notify refuses it
            raise ConfigError(
                f"bindings.{self.name}.metadata.channel: {len(self._channel.encode())} bytes is over PostgreSQL's "
                f"{MAX_CHANNEL_BYTES}-byte limit of a channel name"
            )
        self._max_result = int(metadata[MAX_RESULT_BYTES.name])
        await self.connect(self._postgres).open(metadata)

    async def read(self, handler: EventHandler) -> None:
        if not self._channel:
            raise ConfigError(f"bindings.{self.name}.metadata.channel: needed to read the binding as an input")
        while True:
            try:
                await self._listen(handler)
            except psycopg.Error as error:
                log.warning(
                    "postgresql binding %r: LISTEN %s failed, again in %gs: %s",
                    self.name,
                    self._channel,
                    RECONNECT_SECONDS,
                    error,
                )
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self, handler: EventHandler) -> None:
        connection = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=5)
        async with connection:
            await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            async for notice in connection.notifies():
                event = BindingEvent(
                    data=notice.payload.encode(), metadata={"channel": notice.channel, "pid": str(notice.pid)}
                )
                try:
                    await handler(event)
                except Exception as error:  # at most once: the notification is not kept
                    log.warning("postgresql binding %r: the app did not take a notification: %s", self.name, error)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._postgres.close()

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        if request.operation == "close":
            await self.close()
            return BindingResponse()
        if self._closed:
            raise closed(self.name)
        call = sql_call(request)
        if any(isinstance(value, str) and "\x00" in value for value in call.params):
            raise InvalidArgument("metadata.params", "PostgreSQL text cannot hold NUL (\\u0000)")
        try:
            async with self._postgres.connection() as conn, _TracedRawCursor(conn) as cursor:
                if request.operation == "exec":
                    await cursor.execute(call.sql, call.params or None)
                    return sql_response(call, rows_affected=cursor.rowcount)
                rows = RowsJson(self._max_result)
                info = conn.info
                operation = statement_operation(call.sql)
                with backend_span("postgresql", operation, statement=call.sql, peer=info.host, port=info.port):
                    # row by row (single-row mode): a query's rows are never all in memory at once
                    stream = cast(AsyncGenerator[Any, None], cursor.stream(call.sql, call.params or None))
                    try:
                        async with contextlib.aclosing(stream):
                            async for row in stream:
                                rows.add(list(row))
                    except psycopg.ProgrammingError as error:  # a statement without rows (an INSERT): none
                        if "didn't produce a result" not in str(error):
                            raise
        except BackendUnavailable as error:
            if isinstance(error.__cause__, psycopg.errors.ProtocolViolation):  # "bind message supplies 1 ..."
                raise InvalidArgument("metadata.params", str(error.__cause__).strip()) from None
            raise
        return sql_response(call, data=rows.data)
