"""Dapr's state API over HTTP (v1.0): save, get, bulk get, delete, transaction, query (v1.0-alpha1).

Each handler converts JSON, path, headers and query into the runtime layer's dataclasses and
calls :class:`~layotto.server.runtime.state.StateService`, the same as the gRPC handlers.

Values: a saved ``value`` is stored as its compact JSON encoding (``"Bruce"`` is stored as the
7 bytes ``"Bruce"``, as daprd does), and a get answers the stored bytes as they are. In a bulk
get, ``data`` is the stored bytes as JSON when they are JSON, else as a string (UTF-8) or, for
other bytes, base64.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from layotto.server.components.state import Concurrency, SetRequest, StateEntry, WriteRequest
from layotto.server.errors import InvalidArgument, LayottoError
from layotto.server.http.errors import (
    Call,
    dapr_errors,
    field_of,
    optional_string,
    require_type,
    string_map,
)
from layotto.server.http.routing import Routes
from layotto.server.runtime.state import StateService, delete_request, entry_metadata, set_request
from layotto.server.runtime.state_query import parse_query

CONCURRENCY = {"first-write": Concurrency.FIRST_WRITE, "last-write": Concurrency.LAST_WRITE}
CONSISTENCY = ("eventual", "strong")


def to_concurrency(value: Any, field: str) -> Concurrency:
    """Dapr's ``first-write`` / ``last-write`` (absent or empty: the store's default)."""
    if value in (None, ""):
        return Concurrency.UNSPECIFIED
    if value not in CONCURRENCY:
        raise InvalidArgument(field, f"must be one of {', '.join(CONCURRENCY)}, got {str(value)[:40]!r}")
    return CONCURRENCY[value]


def check_consistency(value: Any, field: str) -> None:
    """Dapr's ``eventual`` / ``strong`` (every store is strongly consistent, so either is served)."""
    if value not in (None, "", *CONSISTENCY):
        raise InvalidArgument(field, f"must be one of {', '.join(CONSISTENCY)}, got {str(value)[:40]!r}")


def options_concurrency(item: dict[str, Any], field: str) -> Concurrency:
    options = field_of(item, "options")
    if options is None:
        return Concurrency.UNSPECIFIED
    require_type(options, dict, f"{field}.options", "an object")
    check_consistency(field_of(options, "consistency"), f"{field}.options.consistency")
    return to_concurrency(field_of(options, "concurrency"), f"{field}.options.concurrency")


def encode_value(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def to_set(item: Any, field: str) -> SetRequest:
    """One ``{key, value, etag, metadata, options}`` of a save or an upsert."""
    require_type(item, dict, field, "an object with key and value")
    return set_request(
        optional_string(field_of(item, "key"), f"{field}.key"),
        encode_value(field_of(item, "value")),
        etag=optional_string(field_of(item, "etag"), f"{field}.etag"),
        metadata=string_map(field_of(item, "metadata"), f"{field}.metadata"),
        concurrency=options_concurrency(item, field),
        field=field,
    )


def to_write(operation: Any, field: str) -> WriteRequest:
    """One ``{operation: upsert|delete, request: {...}}`` of a transaction."""
    require_type(operation, dict, field, "an object with operation and request")
    kind = field_of(operation, "operation")
    request = field_of(operation, "request")
    if request is None:
        raise InvalidArgument(f"{field}.request", "is missing")
    where = f"{field}.request"
    if kind == "upsert":
        return to_set(request, where)
    if kind == "delete":
        require_type(request, dict, where, "an object with key")
        return delete_request(
            optional_string(field_of(request, "key"), f"{where}.key"),
            etag=optional_string(field_of(request, "etag"), f"{where}.etag"),
            concurrency=options_concurrency(request, where),
            field=where,
        )
    raise InvalidArgument(f"{field}.operation", f"must be 'upsert' or 'delete', got {str(kind)[:40]!r}")


_DECODER = json.JSONDecoder()
_JSON_WHITESPACE = " \t\n\r"


def is_json(value: bytes) -> bool:
    """Whether ``value`` is one JSON document (as ``json.loads`` reads bytes: UTF-8, -16 or -32)."""
    try:  # the common case first, UTF-8 text, without json.loads' encoding detection (a third of the cost)
        text = value.decode()
        start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
        end = _DECODER.raw_decode(text, start)[1]
        if not text[end:].strip(_JSON_WHITESPACE):
            return True
    except (ValueError, UnicodeDecodeError):
        pass
    try:  # a UTF-8 BOM, UTF-16 or UTF-32: json.loads decides
        json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def bulk_data(value: bytes) -> Any:
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        return value.decode()
    except UnicodeDecodeError:
        return base64.b64encode(value).decode()


def bulk_item(key: str, result: StateEntry | LayottoError | None) -> dict[str, Any]:
    if result is None:
        return {"key": key}
    if isinstance(result, LayottoError):
        return {"key": key, "error": result.message}
    item: dict[str, Any] = {"key": key, "data": bulk_data(result.value), "etag": result.etag}
    if metadata := entry_metadata(result):
        item["metadata"] = metadata
    return item


class StateHttp:
    def __init__(self, state: StateService) -> None:
        self._state = state

    def add_routes(self, routes: Routes) -> None:
        routes.add("POST", "/v1.0/state/{store}/bulk", self.bulk_get)
        routes.add("POST", "/v1.0/state/{store}/transaction", self.transaction)
        routes.add("POST", "/v1.0/state/{store}", self.save)
        routes.add("POST", "/v1.0-alpha1/state/{store}/query", self.query)
        routes.add("GET", "/v1.0/state/{store}/{key:.+}", self.get)
        routes.add("DELETE", "/v1.0/state/{store}/{key:.+}", self.delete)

    @dapr_errors("state", "ERR_STATE_SAVE")
    async def save(self, call: Call) -> web.Response:
        items = require_type(await call.json(), list, "body", "an array of state items")
        fields = [f"body[{i}]" for i in range(len(items))]
        writes = [to_set(item, f) for item, f in zip(items, fields, strict=True)]
        await self._state.write(call.params["store"], writes, fields)
        return web.Response(status=204)

    @dapr_errors("state", "ERR_STATE_GET")
    async def get(self, call: Call) -> web.Response:
        if call.request.query_string:  # parsing an empty query costs every call a MultiDict
            check_consistency(call.request.query.get("consistency"), "consistency")
        entry = await self._state.get(call.params["store"], call.params["key"])
        if entry is None:
            return web.Response(status=204)
        headers = {"ETag": entry.etag} if entry.etag else {}
        headers.update({f"metadata.{k}": v for k, v in entry_metadata(entry).items()})
        content_type = "application/json" if is_json(entry.value) else "application/octet-stream"
        return web.Response(body=entry.value, headers=headers, content_type=content_type)

    @dapr_errors("state", "ERR_STATE_BULK_GET")
    async def bulk_get(self, call: Call) -> web.Response:
        body = require_type(await call.json(), dict, "body", "an object with keys")
        keys = require_type(field_of(body, "keys"), list, "keys", "an array of strings")
        for i, key in enumerate(keys):
            require_type(key, str, f"keys[{i}]", "a string")
        parallelism = require_type(field_of(body, "parallelism", 0), int, "parallelism", "an integer")
        results = await self._state.bulk_get(call.params["store"], keys, parallelism)
        return web.json_response([bulk_item(k, r) for k, r in results])

    @dapr_errors("state", "ERR_STATE_DELETE")
    async def delete(self, call: Call) -> web.Response:
        check_consistency(call.request.query.get("consistency"), "consistency")
        write = delete_request(
            call.params["key"],
            etag=call.request.headers.get("If-Match", ""),
            concurrency=to_concurrency(call.request.query.get("concurrency"), "concurrency"),
            field="",
        )
        await self._state.write(call.params["store"], [write], [""])
        return web.Response(status=204)

    @dapr_errors("state", "ERR_STATE_QUERY")
    async def query(self, call: Call) -> web.Response:
        """``{"results": [{key, data, etag}], "token"}`` of the body's query (Dapr's shape)."""
        query = parse_query(await call.json(), "body")
        result = await self._state.query(call.params["store"], query)
        body: dict[str, Any] = {
            "results": [{"key": e.key, "data": bulk_data(e.value), "etag": e.etag} for e in result.entries]
        }
        if result.token:
            body["token"] = result.token
        return web.json_response(body)

    @dapr_errors("state", "ERR_STATE_TRANSACTION")
    async def transaction(self, call: Call) -> web.Response:
        body = require_type(await call.json(), dict, "body", "an object with operations")
        operations = require_type(field_of(body, "operations"), list, "operations", "an array of operations")
        writes = [to_write(op, f"operations[{i}]") for i, op in enumerate(operations)]
        await self._state.transact(call.params["store"], writes, "store")
        return web.Response(status=204)
