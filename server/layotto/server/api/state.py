"""The State API over gRPC: GetState, GetBulkState, SaveState, DeleteState, DeleteBulkState and
ExecuteStateTransaction, for the Layotto and the Dapr services alike (their state messages
have the same fields).

Each handler converts its message into the runtime layer's dataclasses, calls
:class:`~layotto.server.runtime.state.StateService` (which holds the semantics, shared with
the HTTP API) and converts the result back.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2

from layotto.server.api.adapter import Context
from layotto.server.components.state import Concurrency, DeleteRequest, SetRequest, StateEntry, WriteRequest
from layotto.server.errors import InvalidArgument, LayottoError
from layotto.server.runtime.state import (
    StateService,
    delete_request,
    entry_metadata,
    set_request,
    sub,
)
from layotto.server.runtime.state_query import parse_query_text
from layotto.server.runtime.validation import require_count, require_enum, require_key

__all__ = ["StateApi", "StateMessages", "entry_metadata"]


@dataclass(frozen=True)
class StateMessages:
    """The response classes of one wire API (Layotto's or Dapr's)."""

    get_state_response: Any
    get_bulk_state_response: Any
    bulk_state_item: Any
    query_state_response: Any = None  # None: the API has no query (Layotto's)
    query_state_item: Any = None


# -- conversions: small pure functions -------------------------------------------------


def enum_names(message: Any, field_name: str) -> Mapping[int, str]:
    """The numbers and names of an enum field of ``message`` (the same for both wire APIs); built
    once per message type and field, read only."""
    return _enum_names(message.DESCRIPTOR, field_name)


@functools.cache
def _enum_names(descriptor: Any, field_name: str) -> Mapping[int, str]:
    enum = descriptor.fields_by_name[field_name].enum_type
    return types.MappingProxyType({value.number: value.name for value in enum.values})


def require_consistency(message: Any, field: str) -> None:
    """A ``consistency`` the contract names (every store is strongly consistent, so any is served)."""
    require_enum(message.consistency, enum_names(message, "consistency"), field)


def concurrency_of(item: Any, field: str) -> Concurrency:
    """The concurrency of an item's ``options`` (UNSPECIFIED when it has none), its enums checked."""
    if not item.HasField("options"):
        return Concurrency.UNSPECIFIED
    options = item.options
    require_consistency(options, sub(field, "options.consistency"))
    number = require_enum(options.concurrency, enum_names(options, "concurrency"), sub(field, "options.concurrency"))
    return Concurrency(number)


def to_set_request(item: Any, field: str) -> SetRequest:
    return set_request(
        item.key,
        item.value,
        etag=item.etag.value if item.HasField("etag") else None,
        metadata=item.metadata,
        concurrency=concurrency_of(item, field),
        field=field,
    )


def to_delete_request(item: Any, field: str) -> DeleteRequest:
    """``item``: a request (DeleteState) or state item with key, etag and options."""
    require_key(item.key, sub(field, "key"))
    return delete_request(item.key, etag=item.etag.value, concurrency=concurrency_of(item, field), field=field)


def to_write_request(operation: Any, field: str) -> WriteRequest:
    kind = operation.operationType
    if not operation.HasField("request"):
        raise InvalidArgument(f"{field}.request", "is missing")
    if kind == "upsert":
        return to_set_request(operation.request, f"{field}.request")
    if kind == "delete":
        return to_delete_request(operation.request, f"{field}.request")
    raise InvalidArgument(f"{field}.operationType", f"must be 'upsert' or 'delete', got {kind!r}")


# -- handlers ----------------------------------------------------------------------------


class StateApi:
    def __init__(self, state: StateService, messages: StateMessages) -> None:
        self._state = state
        self._messages = messages

    async def GetState(self, request: Any, context: Context) -> Any:
        key = require_key(request.key, "key")
        require_consistency(request, "consistency")
        entry = await self._state.get(request.store_name, key)
        if entry is None:
            return self._messages.get_state_response()
        return self._messages.get_state_response(data=entry.value, etag=entry.etag, metadata=entry_metadata(entry))

    async def GetBulkState(self, request: Any, context: Context) -> Any:
        results = await self._state.bulk_get(request.store_name, list(request.keys), request.parallelism)
        return self._messages.get_bulk_state_response(items=[self._bulk_item(k, r) for k, r in results])

    def _bulk_item(self, key: str, result: StateEntry | LayottoError | None) -> Any:
        item = self._messages.bulk_state_item
        if result is None:
            return item(key=key)
        if isinstance(result, LayottoError):
            return item(key=key, error=result.message)
        return item(key=key, data=result.value, etag=result.etag, metadata=entry_metadata(result))

    async def SaveState(self, request: Any, context: Context) -> empty_pb2.Empty:
        require_count(request.states, "states")
        fields = [f"states[{i}]" for i in range(len(request.states))]
        writes = [to_set_request(item, f) for item, f in zip(request.states, fields, strict=True)]
        await self._state.write(request.store_name, writes, fields)
        return empty_pb2.Empty()

    async def DeleteState(self, request: Any, context: Context) -> empty_pb2.Empty:
        await self._state.write(request.store_name, [to_delete_request(request, "")], [""])
        return empty_pb2.Empty()

    async def DeleteBulkState(self, request: Any, context: Context) -> empty_pb2.Empty:
        require_count(request.states, "states")
        fields = [f"states[{i}]" for i in range(len(request.states))]
        writes = [to_delete_request(item, f) for item, f in zip(request.states, fields, strict=True)]
        await self._state.write(request.store_name, writes, fields)
        return empty_pb2.Empty()

    async def QueryStateAlpha1(self, request: Any, context: Context) -> Any:
        """Dapr's query (a JSON text in ``query``): the page's items and the next page's token."""
        result = await self._state.query(request.store_name, parse_query_text(request.query, "query"))
        item = self._messages.query_state_item
        return self._messages.query_state_response(
            results=[item(key=e.key, data=e.value, etag=e.etag) for e in result.entries], token=result.token
        )

    async def ExecuteStateTransaction(self, request: Any, context: Context) -> empty_pb2.Empty:
        require_count(request.operations, "operations")
        writes = [to_write_request(op, f"operations[{i}]") for i, op in enumerate(request.operations)]
        await self._state.transact(request.storeName, writes)
        return empty_pb2.Empty()
