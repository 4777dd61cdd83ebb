"""The State API: GetState, GetBulkState, SaveState, DeleteState, DeleteBulkState and
ExecuteStateTransaction, for the Layotto and the Dapr services alike (their state
messages have the same fields).

Each handler reads: validate -> find the store -> convert -> call -> convert back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2

from layotto.server.api.adapter import Context
from layotto.server.components.base import Feature
from layotto.server.components.loader import ComponentSet
from layotto.server.components.state import (
    Concurrency,
    DeleteRequest,
    SetRequest,
    StateEntry,
    StateStore,
    WriteRequest,
)
from layotto.server.errors import (
    BulkPartialFailure,
    EtagInvalid,
    EtagMismatch,
    FeatureNotSupported,
    InvalidArgument,
    LayottoError,
)
from layotto.server.runtime.validation import (
    MAX_PARALLELISM,
    TTL_KEY,
    parse_ttl,
    require_count,
    require_enum,
    require_key,
    require_range,
    require_size,
)

TTL_EXPIRE_KEY = "ttlExpireTime"
#: the latest expiry a read reports; a stored one beyond it (or not a number) is reported as this
LATEST_REPORTED_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


@dataclass(frozen=True)
class StateMessages:
    """The response classes of one wire API (Layotto's or Dapr's)."""

    get_state_response: Any
    get_bulk_state_response: Any
    bulk_state_item: Any


# -- conversions: small pure functions -------------------------------------------------


def sub(field: str, name: str) -> str:
    """The path of ``name`` inside ``field`` (the request itself when ``field`` is empty)."""
    return f"{field}.{name}" if field else name


def enum_names(message: Any, field_name: str) -> dict[int, str]:
    """The numbers and names of an enum field of ``message`` (the same for both wire APIs)."""
    enum = message.DESCRIPTOR.fields_by_name[field_name].enum_type
    return {value.number: value.name for value in enum.values}


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
    return SetRequest(
        key=require_key(item.key, f"{field}.key"),
        value=item.value,
        etag=item.etag.value or None if item.HasField("etag") else None,
        ttl_seconds=parse_ttl(item.metadata, f"{field}.metadata"),
        concurrency=concurrency_of(item, field),
    )


def to_delete_request(item: Any, field: str) -> DeleteRequest:
    """``item``: a request (DeleteState) or state item with key, etag and options."""
    return DeleteRequest(
        key=require_key(item.key, sub(field, "key")),
        etag=item.etag.value or None,
        concurrency=concurrency_of(item, field),
    )


def entry_metadata(entry: StateEntry) -> dict[str, str]:
    """``ttlExpireTime`` of an entry with an expiry: never fails, whatever a store holds
    (an expiry past year 9999 or not finite is reported as the latest date there is)."""
    if entry.expire_at is None:
        return {}
    try:
        expire = dt.datetime.fromtimestamp(entry.expire_at, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        expire = LATEST_REPORTED_EXPIRY
    return {TTL_EXPIRE_KEY: expire.isoformat(timespec="seconds").replace("+00:00", "Z")}


def check_limits(store: StateStore, write: WriteRequest, field: str) -> None:
    """Refuse a key or value the store cannot take, naming the field and the limit."""
    limits, what = store.spec.limits, f"state store {store.name!r} ({store.spec.type})"
    require_size(write.key, sub(field, "key"), limits.max_key_bytes, what)
    if isinstance(write, SetRequest):
        require_size(write.value, f"{field}.value", limits.max_value_bytes, what)


def check_transaction_limits(store: StateStore, writes: Sequence[WriteRequest]) -> None:
    limits, what = store.spec.limits, f"state store {store.name!r} ({store.spec.type})"
    if limits.max_transaction_items is not None and len(writes) > limits.max_transaction_items:
        raise InvalidArgument(
            "operations",
            f"{len(writes)} operations is over the {limits.max_transaction_items}-operation limit of {what}",
        )
    if limits.max_transaction_bytes is not None:
        size = sum(len(w.key.encode()) + (len(w.value) if isinstance(w, SetRequest) else 0) for w in writes)
        if size > limits.max_transaction_bytes:
            raise InvalidArgument(
                "operations",
                f"keys and values total {size} bytes, over the {limits.max_transaction_bytes}-byte limit of {what}",
            )


def check_features(store: StateStore, request: WriteRequest) -> None:
    if request.etag and not store.supports(Feature.ETAG):
        raise FeatureNotSupported(store.name, "etags")
    if request.concurrency is Concurrency.FIRST_WRITE and not store.supports(Feature.FIRST_WRITE):
        raise FeatureNotSupported(store.name, "first-write concurrency")
    if isinstance(request, SetRequest) and request.ttl_seconds and not store.supports(Feature.TTL):
        raise FeatureNotSupported(store.name, TTL_KEY)


def locate_etag_error(error: LayottoError, write: WriteRequest, field: str) -> LayottoError:
    """The same etag error, naming the request field it came from."""
    etag_field = sub(field, "etag")
    if isinstance(error, EtagMismatch):
        return EtagMismatch(write.key, etag_field)
    if isinstance(error, EtagInvalid):
        return EtagInvalid(write.key, write.etag or "", etag_field)
    return error


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
    def __init__(self, components: ComponentSet, messages: StateMessages) -> None:
        self._components = components
        self._messages = messages

    def _store(self, name: str, field: str = "store_name") -> StateStore:
        store = self._components.find("state", name, field)
        assert isinstance(store, StateStore)  # the state registry only holds state stores
        return store

    async def GetState(self, request: Any, context: Context) -> Any:
        key = require_key(request.key, "key")
        require_consistency(request, "consistency")
        store = self._store(request.store_name)
        require_size(key, "key", store.spec.limits.max_key_bytes, f"state store {store.name!r} ({store.spec.type})")
        entry = await store.get(key)
        if entry is None:
            return self._messages.get_state_response()
        return self._messages.get_state_response(data=entry.value, etag=entry.etag, metadata=entry_metadata(entry))

    async def GetBulkState(self, request: Any, context: Context) -> Any:
        require_count(request.keys, "keys")
        keys = [require_key(k, f"keys[{i}]") for i, k in enumerate(request.keys)]
        require_range(request.parallelism, "parallelism", 0, MAX_PARALLELISM)
        store = self._store(request.store_name)
        limit, what = store.spec.limits.max_key_bytes, f"state store {store.name!r} ({store.spec.type})"
        for i, key in enumerate(keys):
            require_size(key, f"keys[{i}]", limit, what)
        results = await store.bulk_get(keys)
        return self._messages.get_bulk_state_response(
            items=[self._bulk_item(k, r) for k, r in zip(keys, results, strict=True)]
        )

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
        await self._write(self._store(request.store_name), writes, fields)
        return empty_pb2.Empty()

    async def DeleteState(self, request: Any, context: Context) -> empty_pb2.Empty:
        delete = to_delete_request(request, "")
        await self._write(self._store(request.store_name), [delete], [""])
        return empty_pb2.Empty()

    async def DeleteBulkState(self, request: Any, context: Context) -> empty_pb2.Empty:
        require_count(request.states, "states")
        fields = [f"states[{i}]" for i in range(len(request.states))]
        writes = [to_delete_request(item, f) for item, f in zip(request.states, fields, strict=True)]
        await self._write(self._store(request.store_name), writes, fields)
        return empty_pb2.Empty()

    async def _write(self, store: StateStore, writes: Sequence[WriteRequest], fields: Sequence[str]) -> None:
        for write, field in zip(writes, fields, strict=True):
            check_limits(store, write, field)
            check_features(store, write)
        if len(writes) == 1:
            write = writes[0]
            try:
                await (store.set(write) if isinstance(write, SetRequest) else store.delete(write))
            except (EtagMismatch, EtagInvalid) as error:
                raise locate_etag_error(error, write, fields[0]) from None
            return
        failures = await store.bulk_write(writes)
        if failures:
            where = {w.key: (w, f) for w, f in zip(writes, fields, strict=True)}
            raise BulkPartialFailure({k: locate_etag_error(e, *where[k]) for k, e in failures.items()})

    async def ExecuteStateTransaction(self, request: Any, context: Context) -> empty_pb2.Empty:
        require_count(request.operations, "operations")
        writes = [to_write_request(op, f"operations[{i}]") for i, op in enumerate(request.operations)]
        store = self._store(request.storeName, "storeName")
        if not store.supports(Feature.TRANSACTIONAL):
            raise FeatureNotSupported(store.name, "transactions")
        for i, write in enumerate(writes):
            check_limits(store, write, f"operations[{i}].request")
            check_features(store, write)
        check_transaction_limits(store, writes)
        await store.transact(writes)
        return empty_pb2.Empty()
