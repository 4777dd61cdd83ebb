"""Dapr's state query, as the stores answer it: a parsed query and the reference semantics.

A :class:`Query` is a filter (:class:`Eq`, :class:`In`, :class:`And`, :class:`Or`) over the JSON
document each value holds, sort keys and a page. A path names a member of the document
(``("person", "org")`` for Dapr's ``"person.org"``). The semantics every store answers, which the
functions below evaluate in Python (the in-memory store's answer, and the reference the SQL
stores are tested against):

* only entries whose value is a JSON document are queried (others are never in a result);
* EQ / IN compare JSON scalars by type and value: ``1`` equals ``1.0`` but not ``"1"`` nor
  ``true``; a missing member equals nothing;
* sorting orders values by kind first (missing or null, then strings, numbers, booleans, arrays,
  objects; the reverse with DESC), strings by code point, ties by the entry's key (ascending);
* a page of ``limit`` entries (0: every entry) starting at ``offset``; the result's token is the
  next page's offset (as a string), empty when no entry is left.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from layotto.server.components.state import StateEntry

Scalar = str | int | float | bool
Path = tuple[str, ...]


@dataclass(frozen=True)
class Eq:
    path: Path
    value: Scalar


@dataclass(frozen=True)
class In:
    path: Path
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class And:
    operands: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Filter, ...]


Filter = Eq | In | And | Or


@dataclass(frozen=True)
class SortKey:
    path: Path
    descending: bool = False


@dataclass(frozen=True)
class Query:
    filter: Filter | None = None
    sort: tuple[SortKey, ...] = ()
    limit: int = 0  # 0: no limit
    offset: int = 0


@dataclass(frozen=True)
class QueryResult:
    entries: list[StateEntry]
    token: str = ""  # the next page's token; empty: no entry is left


#: the rank of each kind of JSON value when sorting (a missing member ranks as null)
KIND_RANKS = {"null": 0, "string": 1, "number": 2, "boolean": 3, "array": 4, "object": 5}
_MISSING = object()


def kind_of(value: Any) -> str:
    """The JSON kind of a decoded value: null, string, number, boolean, array or object."""
    if value is None or value is _MISSING:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def member(document: Any, path: Path) -> Any:
    """The member of ``document`` at ``path``, or a marker for a missing one."""
    for name in path:
        if not isinstance(document, dict) or name not in document:
            return _MISSING
        document = document[name]
    return document


def same_scalar(found: Any, wanted: Scalar) -> bool:
    """JSON equality of a scalar: the same kind and value (``1 == 1.0``, ``1 != true``)."""
    return kind_of(found) == kind_of(wanted) and found == wanted


def matches(document: Any, condition: Filter) -> bool:
    if isinstance(condition, Eq):
        return same_scalar(member(document, condition.path), condition.value)
    if isinstance(condition, In):
        found = member(document, condition.path)
        return any(same_scalar(found, value) for value in condition.values)
    if isinstance(condition, And):
        return all(matches(document, operand) for operand in condition.operands)
    return any(matches(document, operand) for operand in condition.operands)


def sort_value(document: Any, path: Path) -> tuple[int, Any]:
    """(rank of the kind, the comparable value: scalars themselves, None for the others)."""
    found = member(document, path)
    kind = kind_of(found)
    return KIND_RANKS[kind], found if kind in ("string", "number", "boolean") else None


def _sortable(pair: tuple[StateEntry, Any], path: Path) -> tuple[int, Any]:
    rank, value = sort_value(pair[1], path)
    return rank, (0 if value is None else value)


def evaluate(entries: Iterable[StateEntry], query: Query) -> QueryResult:
    """The page of ``entries`` that ``query`` selects (the reference semantics, in Python)."""
    documents: list[tuple[StateEntry, Any]] = []
    for entry in entries:
        try:
            document = json.loads(entry.value)
        except (ValueError, UnicodeDecodeError):
            continue
        if query.filter is None or matches(document, query.filter):
            documents.append((entry, document))
    documents.sort(key=lambda pair: pair[0].key)
    for key in reversed(query.sort):
        documents.sort(key=lambda pair, path=key.path: _sortable(pair, path), reverse=key.descending)  # type: ignore[misc]
    return page([entry for entry, _ in documents], query)


def page(ordered: Sequence[StateEntry], query: Query) -> QueryResult:
    """The page of ``ordered`` (every entry the query selects, in order) at ``query.offset``."""
    if not query.limit:
        return QueryResult(list(ordered[query.offset :]))
    end = query.offset + query.limit
    return QueryResult(list(ordered[query.offset : end]), str(end) if len(ordered) > end else "")


def page_of(rows: Sequence[StateEntry], query: Query) -> QueryResult:
    """The page of a store that selected, from ``query.offset`` on, at most ``limit + 1`` rows
    (the one more says another page follows)."""
    if not query.limit or len(rows) <= query.limit:
        return QueryResult(list(rows))
    return QueryResult(list(rows[: query.limit]), str(query.offset + query.limit))
