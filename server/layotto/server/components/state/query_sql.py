"""Dapr's state query as SQL for the SQLite and PostgreSQL state stores (PostgreSQL's half is in
:mod:`layotto.server.components.state.query_postgresql`, so SQLite's users never import psycopg):
every value of the query goes as a parameter, never into the text. The semantics (those of
:mod:`layotto.server.components.state.query`) are the same on both:

* SQLite reads the document with its JSON functions (``json_type`` / ``json_extract`` with a path
  such as ``$."person"."org"``), a value that is not JSON text standing for none;
* PostgreSQL reads it as ``jsonb`` (``layotto_try_jsonb``, NULL for a value that is not JSON) and
  compares members with ``#>`` and jsonb equality.
"""

from __future__ import annotations

from typing import Any

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
