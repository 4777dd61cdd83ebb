"""Dapr's ``bindings.mysql`` output binding: exec, query and close (MySQL and MariaDB).

The request's ``sql`` metadata is the statement, with ``?`` placeholders (as with Dapr's Go
driver); ``params`` (a JSON array) holds their values, which the driver escapes and sends.
``query`` answers the rows as a JSON array of objects (column name -> value); ``exec``
answers ``rows-affected`` in the response metadata. The component's DSN is Dapr's ``url``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, Feature
from layotto.server.components.bindings import BindingRequest, BindingResponse, OutputBinding
from layotto.server.components.bindings.sql import (
    MAX_RESULT_BYTES,
    SQL_OPERATIONS,
    RowsJson,
    closed,
    params_mismatch,
    sql_call,
    sql_response,
)
from layotto.server.components.mysql_client import MYSQL_METADATA, MysqlConnection

#: rows fetched from the server at a time by a query
FETCH_ROWS = 500

#: Dapr's mysql binding names the DSN ``url``; the rest is the shared connection metadata
_METADATA = tuple(replace(f, name="url") if f.name == "connectionString" else f for f in MYSQL_METADATA)


def driver_placeholders(sql: str) -> str:
    """``sql`` with each ``?`` outside quotes, backquotes and comments turned into the driver's
    ``%s``, and every other ``%`` doubled (the driver formats the statement with its escaped values)."""
    return _translate(sql)[0]


def _translate(sql: str) -> tuple[str, int]:
    """:func:`driver_placeholders` of ``sql``, and how many placeholders it has."""
    placeholders = 0
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(sql):
        char = sql[i]
        if quote:
            if char == "\\" and quote != "`" and i + 1 < len(sql):
                out.append(sql[i : i + 2].replace("%", "%%"))
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "?":
            out.append("%s")
            placeholders += 1
            i += 1
            continue
        elif sql.startswith(("-- ", "#"), i) or sql.startswith("/*", i):
            end = _comment_end(sql, i)
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        out.append("%%" if char == "%" else char)
        i += 1
    return "".join(out), placeholders


def _comment_end(sql: str, start: int) -> int:
    if sql.startswith("/*", start):
        close = sql.find("*/", start + 2)
        return len(sql) if close == -1 else close + 2
    newline = sql.find("\n", start)
    return len(sql) if newline == -1 else newline


class MysqlBinding(OutputBinding):
    spec = ComponentSpec(
        type="mysql",
        building_block="bindings",
        description="Runs the request's SQL statement with its parameters (? placeholders bound from the params "
        "JSON array) on MySQL or MariaDB: exec answers the rows affected, query the rows as JSON objects.",
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=SQL_OPERATIONS,
        metadata=(*_METADATA, MAX_RESULT_BYTES),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._mysql = MysqlConnection(name)
        self._closed = False
        self._max_result = int(MAX_RESULT_BYTES.default)

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._max_result = int(metadata[MAX_RESULT_BYTES.name])
        connection = {**metadata, "connectionString": metadata["url"]}
        try:
            await self.connect(self._mysql).open(connection, f"bindings.{self.name}.metadata")
        except ConfigError as error:  # the shared connection names its DSN connectionString; here it is url
            raise ConfigError(str(error).replace(".connectionString:", ".url:")) from None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._mysql.close()

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        if request.operation == "close":
            await self.close()
            return BindingResponse()
        if self._closed:
            raise closed(self.name)
        call = sql_call(request)
        statement, placeholders = _translate(call.sql)
        if placeholders != len(call.params):
            raise params_mismatch(placeholders, call.params)
        if not call.params:
            statement = call.sql
        streaming = request.operation == "query"  # rows read as they are encoded, never all at once
        async with self._mysql.cursor(streaming=streaming) as cursor:
            affected = await cursor.execute(statement, call.params or None)
            if request.operation == "exec":
                return sql_response(call, rows_affected=int(affected))
            columns = [column[0] for column in cursor.description or ()]
            rows = RowsJson(self._max_result)
            while batch := await cursor.fetchmany(FETCH_ROWS):
                for row in batch:
                    rows.add(dict(zip(columns, row, strict=True)))
        return sql_response(call, data=rows.data)
