"""What the SQL output bindings share: Dapr's ``sql`` and ``params`` request metadata, the
response metadata, and rows as JSON.

The statement is sent as written and the values of ``params`` (a JSON array) travel as the
driver's parameters, never spliced into the statement text. Values no driver binds (an object,
NaN, a number beyond a float) and a count that does not match the statement's placeholders are
InvalidArgument naming ``metadata.params``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from layotto.server.components.base import MetadataField, MiB
from layotto.server.components.bindings import BindingRequest, BindingResponse
from layotto.server.errors import BackendUnavailable, InvalidArgument, LayottoError, ResponseTooLarge

SQL_OPERATIONS = ("exec", "query", "close")
MAX_RESULT_BYTES = MetadataField(
    "maxResultBytes",
    "The most bytes of JSON a query answers; rows are read from the server as they are encoded, and a query "
    "whose rows are larger fails with PAYLOAD_TOO_LARGE. Keep it below the runtime's max_message_bytes.",
    type=int,
    default=16 * MiB - 64 * 1024,
    minimum=2,
    maximum=2**31 - 1,
)


@dataclass(frozen=True)
class SqlCall:
    """One exec or query: the statement, its parameters, and when it started."""

    operation: str
    sql: str
    params: list[Any]
    started: dt.datetime
    started_clock: float


def sql_call(request: BindingRequest) -> SqlCall:
    """The statement (``metadata.sql``) and parameters (``metadata.params``, a JSON array) of a request.

    Raises InvalidArgument naming ``metadata.sql`` or ``metadata.params``.
    """
    sql = request.required("sql")
    raw = request.metadata.get("params", "")
    params: Any = []
    if raw:
        try:
            params = json.loads(raw, parse_constant=_refuse_constant)
        except ValueError as error:
            raise InvalidArgument("metadata.params", f"expected a JSON array, got {raw!r} ({error})") from None
        if not isinstance(params, list):
            raise InvalidArgument("metadata.params", f"expected a JSON array, got {raw!r}")
        for position, value in enumerate(params):
            _check_param(value, position)
    return SqlCall(request.operation, sql, params, dt.datetime.now(dt.UTC), time.monotonic())


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_param(value: Any, position: int) -> None:
    """InvalidArgument naming ``metadata.params`` for a value no driver binds: an object, a number too
    large for a float (``1e400``)."""
    if isinstance(value, dict):
        raise InvalidArgument(
            "metadata.params", f"value {position + 1} is an object: expected a string, number, boolean, null or array"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument("metadata.params", f"value {position + 1} is out of a float's range")
    if isinstance(value, list):
        for item in value:
            _check_param(item, position)


def params_mismatch(placeholders: int, params: list[Any]) -> InvalidArgument:
    """The error of a statement with ``placeholders`` placeholders called with ``params``."""
    return InvalidArgument(
        "metadata.params", f"the statement has {placeholders} placeholders but {len(params)} values were given"
    )


def sql_response(call: SqlCall, data: bytes = b"", rows_affected: int | None = None) -> BindingResponse:
    """Dapr's response metadata: operation, sql, start-time, end-time, duration (and rows-affected)."""
    seconds = time.monotonic() - call.started_clock
    metadata: dict[str, str] = {
        "operation": call.operation,
        "sql": call.sql,
        "start-time": call.started.isoformat(),
        "end-time": dt.datetime.now(dt.UTC).isoformat(),
        "duration": f"{seconds * 1000:.3f}ms",
    }
    if rows_affected is not None:
        metadata["rows-affected"] = str(rows_affected)
    return BindingResponse(data=data, metadata=metadata)


def _json_value(value: Any) -> Any:
    """A JSON-ready form of a column value json cannot encode itself."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        encoded: Any = value.isoformat()
    elif isinstance(value, dt.timedelta):
        encoded = value.total_seconds()
    elif isinstance(value, decimal.Decimal):
        encoded = int(value) if value == value.to_integral_value() else float(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        encoded = base64.b64encode(bytes(value)).decode()
    elif isinstance(value, Mapping):
        encoded = dict(value)
    else:  # UUID, IP addresses, ranges, ...
        encoded = str(value)
    return encoded


class RowsTooLarge(ResponseTooLarge):
    """The rows of a query are over the binding's ``maxResultBytes``."""

    def __init__(self, limit: int) -> None:
        LayottoError.__init__(
            self,
            f"data: the rows are over the binding's {limit}-byte maxResultBytes; select fewer at a time",
            metadata={"field": "data"},
        )


class RowsJson:
    """Rows (lists, or mappings of column to value) encoded one at a time into a JSON array of at most
    ``limit`` bytes (RowsTooLarge past it); dates in ISO 8601, bytes in base64, NaN and infinite floats
    as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 2  # the brackets

    def add(self, row: Any) -> None:
        try:
            text = json.dumps(row, default=_json_value, ensure_ascii=False, allow_nan=False)
        except ValueError:  # a NaN or an infinity somewhere
            text = json.dumps(_finite(row), default=_json_value, ensure_ascii=False, allow_nan=False)
        encoded = text.encode()
        self._size += len(encoded) + (1 if self._parts else 0)
        if self._size > self._limit:
            raise RowsTooLarge(self._limit)
        self._parts.append(encoded)

    @property
    def data(self) -> bytes:
        return b"[" + b",".join(self._parts) + b"]"


def rows_json(rows: Any, limit: int = 2**63) -> bytes:
    """:class:`RowsJson` of ``rows``."""
    encoder = RowsJson(limit)
    for row in rows:
        encoder.add(row)
    return encoder.data


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (in lists and mappings too) replaced by its name."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    return value


def closed(component: str) -> BackendUnavailable:
    return BackendUnavailable(component, "the binding was closed by a 'close' operation")
