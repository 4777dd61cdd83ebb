"""Dapr's state query as SQL for the SQLite and PostgreSQL state stores: every value of the query
goes as a parameter, never into the text. The semantics (those of
:mod:`layotto.server.components.state.query`) are the same on both:

* SQLite reads the document with its JSON functions (``json_type`` / ``json_extract`` with a path
  such as ``$."person"."org"``), a value that is not JSON text standing for none;
* PostgreSQL reads it as ``jsonb`` (``layotto_try_jsonb``, NULL for a value that is not JSON) and
  compares members with ``#>`` and jsonb equality.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import sql

from layotto.server.components.state.query import And, Eq, Filter, In, Path, Query, Scalar

# -- SQLite ----------------------------------------------------------------------------------

SQLITE_DOC = "(CASE WHEN json_valid(CAST(value AS TEXT)) THEN CAST(value AS TEXT) END)"
_SQLITE_RANK = (
    "CASE json_type({d}, ?) WHEN 'text' THEN 1 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'true' THEN 3 "
    "WHEN 'false' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 ELSE 0 END"
)
_SQLITE_VALUE = "CASE WHEN json_type({d}, ?) IN ('array', 'object') THEN NULL ELSE json_extract({d}, ?) END"


def sqlite_path(path: Path) -> str:
    return "$" + "".join(f'."{name}"' for name in path)


def _sqlite_scalar(path: Path, value: Scalar) -> tuple[str, list[Any]]:
    p = sqlite_path(path)
    if isinstance(value, bool):
        return f"json_type({SQLITE_DOC}, ?) = ?", [p, "true" if value else "false"]
    if isinstance(value, str):
        return f"(json_type({SQLITE_DOC}, ?) = 'text' AND json_extract({SQLITE_DOC}, ?) = ?)", [p, p, value]
    number = value if isinstance(value, float) or -(2**63) <= value < 2**63 else float(value)
    return f"(json_type({SQLITE_DOC}, ?) IN ('integer', 'real') AND json_extract({SQLITE_DOC}, ?) = ?)", [p, p, number]


def sqlite_filter(condition: Filter) -> tuple[str, list[Any]]:
    """The WHERE expression of ``condition`` and its parameters."""
    if isinstance(condition, Eq):
        return _sqlite_scalar(condition.path, condition.value)
    parts = (
        [_sqlite_scalar(condition.path, v) for v in condition.values]
        if isinstance(condition, In)
        else [sqlite_filter(o) for o in condition.operands]
    )
    joiner = " AND " if isinstance(condition, And) else " OR "
    return "(" + joiner.join(text for text, _ in parts) + ")", [p for _, params in parts for p in params]


def sqlite_select(table: str, query: Query, now: float) -> tuple[str, list[Any]]:
    """The statement selecting (key, value, etag, expire_at) of the query's page plus one row
    (whether another page follows), and its parameters."""
    where = f"{SQLITE_DOC} IS NOT NULL AND (expire_at IS NULL OR expire_at > ?)"
    params: list[Any] = [now]
    if query.filter is not None:
        text, filter_params = sqlite_filter(query.filter)
        where += " AND " + text
        params += filter_params
    order = []
    for key in query.sort:
        direction = " DESC" if key.descending else ""
        p = sqlite_path(key.path)
        order += [_SQLITE_RANK.format(d=SQLITE_DOC) + direction, _SQLITE_VALUE.format(d=SQLITE_DOC) + direction]
        params += [p, p, p]
    order.append("key")
    limit = query.limit + 1 if query.limit else -1
    statement = (
        f"SELECT key, value, etag, expire_at FROM {table} WHERE {where} ORDER BY {', '.join(order)} LIMIT ? OFFSET ?"
    )
    return statement, [*params, limit, query.offset]


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
