"""Dapr's state query as PostgreSQL (see :mod:`layotto.server.components.state.query_sql`): the
document read as ``jsonb`` (``layotto_try_jsonb``, NULL for a value that is not JSON), members compared
with ``#>`` and jsonb equality, every value of the query a parameter."""

from __future__ import annotations

import json
from typing import Any

from psycopg import sql

from layotto.server.components.state.query import And, Eq, Filter, In, Query

# -- PostgreSQL ------------------------------------------------------------------------------

#: the function reading a stored value as jsonb (NULL when it is not UTF-8 JSON), created once
PG_TRY_JSONB = sql.SQL(
    "CREATE OR REPLACE FUNCTION layotto_try_jsonb(v BYTEA) RETURNS JSONB LANGUAGE plpgsql IMMUTABLE AS $$ "
    "BEGIN RETURN convert_from(v, 'UTF8')::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$"
)
_PG_RANK = sql.SQL(
    "CASE jsonb_typeof(doc #> %s::text[]) WHEN 'string' THEN 1 WHEN 'number' THEN 2 WHEN 'boolean' THEN 3 "
    "WHEN 'array' THEN 4 WHEN 'object' THEN 5 ELSE 0 END"
)
_PG_STRING = sql.SQL("CASE WHEN jsonb_typeof(doc #> %s::text[]) = 'string' THEN doc #>> %s::text[] END COLLATE \"C\"")
_PG_NUMBER = sql.SQL("CASE WHEN jsonb_typeof(doc #> %s::text[]) = 'number' THEN (doc #>> %s::text[])::numeric END")
_PG_BOOLEAN = sql.SQL("CASE WHEN jsonb_typeof(doc #> %s::text[]) = 'boolean' THEN (doc #>> %s::text[])::boolean END")


def pg_filter(condition: Filter) -> tuple[sql.Composable, list[Any]]:
    """The WHERE expression of ``condition`` over the column ``doc`` (jsonb), and its parameters."""
    if isinstance(condition, Eq):
        return sql.SQL("doc #> %s::text[] = %s::jsonb"), [list(condition.path), json.dumps(condition.value)]
    if isinstance(condition, In):
        values = [json.dumps(v) for v in condition.values]
        return sql.SQL("doc #> %s::text[] = ANY(%s::jsonb[])"), [list(condition.path), values]
    parts = [pg_filter(o) for o in condition.operands]
    joiner = sql.SQL(" AND " if isinstance(condition, And) else " OR ")
    text = sql.SQL("({})").format(joiner.join(part for part, _ in parts))
    return text, [p for _, params in parts for p in params]


def pg_select(table: sql.Identifier, live: str, query: Query) -> tuple[sql.Composed, list[Any]]:
    """The statement selecting (key, value, etag, expiry in epoch seconds) of the query's page
    plus one row, and its parameters."""
    where: sql.Composable = sql.SQL("doc IS NOT NULL")
    params: list[Any] = []
    if query.filter is not None:
        text, params = pg_filter(query.filter)
        where = sql.SQL("{} AND {}").format(where, text)
    order: list[sql.Composable] = []
    for key in query.sort:
        direction = sql.SQL(" DESC" if key.descending else "")
        path = list(key.path)
        order.append(_PG_RANK + direction)
        params.append(path)
        for expression in (_PG_STRING, _PG_NUMBER, _PG_BOOLEAN):
            order.append(expression + direction)
            params += [path, path]
    order.append(sql.SQL('key COLLATE "C"'))
    statement = sql.SQL(
        "SELECT key, value, etag, extract(epoch FROM expire_at) FROM "
        "(SELECT key, value, etag, expire_at, layotto_try_jsonb(value) AS doc FROM {} WHERE " + live + ") AS docs "
        "WHERE {} ORDER BY {} LIMIT %s OFFSET %s"
    ).format(table, where, sql.SQL(", ").join(order))
    return statement, [*params, query.limit + 1 if query.limit else None, query.offset]
