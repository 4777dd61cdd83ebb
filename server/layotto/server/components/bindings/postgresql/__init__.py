"""Dapr's ``bindings.postgresql`` output binding: exec, query and close.

The request's ``sql`` metadata is the statement, with PostgreSQL's own ``$1, $2, ...``
placeholders (as with Dapr's pgx); ``params`` (a JSON array) holds their values, sent as bind
parameters. ``query`` answers the rows as a JSON array of arrays; ``exec`` answers
``rows-affected`` in the response metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature
from layotto.server.components.bindings import BindingRequest, BindingResponse, OutputBinding
from layotto.server.components.bindings.sql import SQL_OPERATIONS, closed, rows_json, sql_call, sql_response
from layotto.server.components.postgres_client import POSTGRES_METADATA, PostgresConnection


class PostgresBinding(OutputBinding):
    spec = ComponentSpec(
        type="postgresql",
        building_block="bindings",
        description="Runs the request's SQL statement with its parameters ($1, $2, ... bound from the params "
        "JSON array) on PostgreSQL: exec answers the rows affected, query the rows as JSON arrays.",
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=SQL_OPERATIONS,
        metadata=POSTGRES_METADATA,
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._postgres = PostgresConnection(name)
        self._closed = False

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self.connect(self._postgres).open(metadata)

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
        async with self._postgres.connection() as conn, psycopg.AsyncRawCursor(conn) as cursor:
            await cursor.execute(call.sql, call.params or None)
            if request.operation == "exec":
                return sql_response(call, rows_affected=cursor.rowcount)
            rows = await cursor.fetchall() if cursor.description is not None else []
        return sql_response(call, data=rows_json(list(row) for row in rows))
