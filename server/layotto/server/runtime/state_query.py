"""Dapr's state query language, parsed and checked once for every store and front end.

A query is a JSON object (the HTTP body, or the gRPC ``query`` string decoded)::

    {"filter": {"AND": [{"EQ": {"state": "CA"}}, {"IN": {"person.org": ["A", "B"]}}]},
     "sort": [{"key": "person.id", "order": "DESC"}],
     "page": {"limit": 10, "token": "10"}}

``filter`` (absent or ``{}``: every entry) is one of ``EQ`` / ``IN`` (one member path, dotted,
and a JSON scalar / a non-empty array of them) or ``AND`` / ``OR`` (an array of at least two
filters); ``sort`` an array of ``{key, order: ASC | DESC}``; ``page.limit`` a non-negative integer
(0: no limit) and ``page.token`` the token a previous page answered. Anything else raises
InvalidArgument naming the field (``query.filter.AND[1].IN``). The semantics are in
:mod:`layotto.server.components.state.query`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from layotto.server.components.state.query import And, Eq, Filter, In, Or, Path, Query, Scalar, SortKey
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.validation import MAX_BULK_ITEMS, require_count

#: how deep AND / OR may nest
MAX_FILTER_DEPTH = 32
#: the largest page a query may ask for (0, no limit, is allowed too)
MAX_PAGE_LIMIT = 100_000
_MEMBERS = {"filter", "sort", "page"}


def _object(value: Any, field: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(field, f"must be {what}, got {type(value).__name__}")
    return value


def parse_path(value: Any, field: str) -> Path:
    """A dotted member path (``person.org``): non-empty names."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(field, "must be a non-empty member path such as 'person.org'")
    path = tuple(value.split("."))
    if not all(path) or '"' in value:
        raise InvalidArgument(field, f"has an empty member name or a '\"' in {value[:80]!r}")
    return path


def parse_scalar(value: Any, field: str) -> Scalar:
    if isinstance(value, bool | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    raise InvalidArgument(field, f"must be a string, number or boolean, got {str(value)[:80]}")


def _single(operand: Any, field: str) -> tuple[Path, Any]:
    operand = _object(operand, field, "an object with one member path")
    if len(operand) != 1:
        raise InvalidArgument(field, f"must name exactly one member path, got {len(operand)}")
    ((path, value),) = operand.items()
    return parse_path(path, field), value


def parse_filter(value: Any, field: str, depth: int = 0) -> Filter:
    """One filter object (``{"EQ": ...}``, ``{"IN": ...}``, ``{"AND": [...]}``, ``{"OR": [...]}``)."""
    value = _object(value, field, "an object with one of EQ, IN, AND, OR")
    if len(value) != 1:
        raise InvalidArgument(field, f"must have exactly one of EQ, IN, AND, OR, got {sorted(value)[:5]}")
    ((name, operand),) = value.items()
    op = str(name).upper()
    where = f"{field}.{name}"
    if op == "EQ":
        path, scalar = _single(operand, where)
        return Eq(path, parse_scalar(scalar, f"{where}.{'.'.join(path)}"))
    if op == "IN":
        path, values = _single(operand, where)
        at = f"{where}.{'.'.join(path)}"
        if not isinstance(values, list) or not values:
            raise InvalidArgument(at, "must be a non-empty array of strings, numbers or booleans")
        require_count(values, at)
        return In(path, tuple(parse_scalar(v, f"{at}[{i}]") for i, v in enumerate(values)))
    if op in ("AND", "OR"):
        if not isinstance(operand, list) or len(operand) < 2:
            raise InvalidArgument(where, "must be an array of at least two filters")
        if depth >= MAX_FILTER_DEPTH:
            raise InvalidArgument(where, f"nests deeper than {MAX_FILTER_DEPTH} levels")
        require_count(operand, where)
        operands = tuple(parse_filter(o, f"{where}[{i}]", depth + 1) for i, o in enumerate(operand))
        return And(operands) if op == "AND" else Or(operands)
    raise InvalidArgument(field, f"has an unknown operation {str(name)[:40]!r} (known: EQ, IN, AND, OR)")


def parse_sort(value: Any, field: str) -> tuple[SortKey, ...]:
    if not isinstance(value, list):
        raise InvalidArgument(field, "must be an array of {key, order}")
    require_count(value, field)
    keys = []
    for i, raw in enumerate(value):
        item = _object(raw, f"{field}[{i}]", "an object with key and order")
        order = item.get("order", "ASC")
        if not isinstance(order, str) or order.upper() not in ("ASC", "DESC"):
            raise InvalidArgument(f"{field}[{i}].order", f"must be ASC or DESC, got {json.dumps(order)[:40]}")
        keys.append(SortKey(parse_path(item.get("key"), f"{field}[{i}].key"), order.upper() == "DESC"))
    return tuple(keys)


def parse_page(value: Any, field: str) -> tuple[int, int]:
    """(limit, offset) of ``{"limit": N, "token": "..."}``."""
    value = _object(value, field, "an object with limit and token")
    limit = value.get("limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidArgument(f"{field}.limit", f"must be an integer from 0 to {MAX_PAGE_LIMIT}, got {limit!r}"[:120])
    token = value.get("token") or ""
    if not isinstance(token, str) or not (token == "" or (token.isdigit() and len(token) <= 18)):
        raise InvalidArgument(f"{field}.token", "must be a token a previous page answered")
    return limit, int(token or 0)


def parse_query(value: Any, field: str = "query") -> Query:
    """The :class:`Query` of a decoded query object; InvalidArgument naming the field otherwise."""
    value = _object(value, field, "an object with filter, sort and page")
    unknown = sorted(set(value) - _MEMBERS)
    if unknown:
        raise InvalidArgument(f"{field}.{unknown[0]}"[:200], "is not a query member (known: filter, sort, page)")
    raw_filter = value.get("filter") or None
    query_filter = None if raw_filter is None else parse_filter(raw_filter, f"{field}.filter")
    sort = parse_sort(value.get("sort", []), f"{field}.sort")
    limit, offset = parse_page(value.get("page") or {}, f"{field}.page")
    return Query(query_filter, sort, limit, offset)


def parse_query_text(text: str, field: str = "query") -> Query:
    """The :class:`Query` of a JSON text (the gRPC ``query`` field)."""
    if len(text) > MAX_BULK_ITEMS * 100:
        raise InvalidArgument(field, f"is {len(text)} characters, over the limit of {MAX_BULK_ITEMS * 100}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InvalidArgument(field, f"is not JSON: {error}"[:200]) from None
    return parse_query(value, field)
