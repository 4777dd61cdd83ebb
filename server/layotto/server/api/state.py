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
from layotto.server.runtime.validation import TTL_KEY, parse_ttl, require_key

TTL_EXPIRE_KEY = "ttlExpireTime"


@dataclass(frozen=True)
class StateMessages:
    """The response classes of one wire API (Layotto's or Dapr's)."""

    get_state_response: Any
    get_bulk_state_response: Any
    bulk_state_item: Any


# -- conversions: small pure functions -------------------------------------------------


def concurrency_of(options: Any) -> Concurrency:
    return Concurrency(options.concurrency) if options is not None else Concurrency.UNSPECIFIED


def to_set_request(item: Any, field: str) -> SetRequest:
    return SetRequest(
        key=require_key(item.key, f"{field}.key"),
        value=item.value,
        etag=item.etag.value or None if item.HasField("etag") else None,
        ttl_seconds=parse_ttl(item.metadata, f"{field}.metadata"),
        concurrency=concurrency_of(item.options),
    )


def to_delete_request(key: str, etag: Any, options: Any, field: str) -> DeleteRequest:
    return DeleteRequest(
        key=require_key(key, f"{field}.key" if field else "key"),
        etag=etag.value or None,
        concurrency=concurrency_of(options),
    )


def entry_metadata(entry: StateEntry) -> dict[str, str]:
    if entry.expire_at is None:
        return {}
    expire = dt.datetime.fromtimestamp(entry.expire_at, tz=dt.UTC)
    return {TTL_EXPIRE_KEY: expire.isoformat(timespec="seconds").replace("+00:00", "Z")}


def check_features(store: StateStore, request: WriteRequest) -> None:
    if request.etag and not store.supports(Feature.ETAG):
        raise FeatureNotSupported(store.name, "etags")
    if request.concurrency is Concurrency.FIRST_WRITE and not store.supports(Feature.FIRST_WRITE):
        raise FeatureNotSupported(store.name, "first-write concurrency")
    if isinstance(request, SetRequest) and request.ttl_seconds and not store.supports(Feature.TTL):
        raise FeatureNotSupported(store.name, TTL_KEY)


def locate_etag_error(error: LayottoError, write: WriteRequest, field: str) -> LayottoError:
    """The same etag error, naming the request field it came from."""
    etag_field = f"{field}.etag" if field else "etag"
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
        item = operation.request
        return to_delete_request(item.key, item.etag, item.options, f"{field}.request")
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
        store = self._store(request.store_name)
        entry = await store.get(key)
        if entry is None:
            return self._messages.get_state_response()
        return self._messages.get_state_response(data=entry.value, etag=entry.etag, metadata=entry_metadata(entry))

    async def GetBulkState(self, request: Any, context: Context) -> Any:
        keys = [require_key(k, f"keys[{i}]") for i, k in enumerate(request.keys)]
        store = self._store(request.store_name)
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
        fields = [f"states[{i}]" for i in range(len(request.states))]
        writes = [to_set_request(item, f) for item, f in zip(request.states, fields, strict=True)]
        await self._write(self._store(request.store_name), writes, fields)
        return empty_pb2.Empty()

    async def DeleteState(self, request: Any, context: Context) -> empty_pb2.Empty:
        delete = to_delete_request(request.key, request.etag, request.options, "")
        await self._write(self._store(request.store_name), [delete], [""])
        return empty_pb2.Empty()

    async def DeleteBulkState(self, request: Any, context: Context) -> empty_pb2.Empty:
        fields = [f"states[{i}]" for i in range(len(request.states))]
        writes = [
            to_delete_request(item.key, item.etag, item.options, f)
            for item, f in zip(request.states, fields, strict=True)
        ]
        await self._write(self._store(request.store_name), writes, fields)
        return empty_pb2.Empty()

    async def _write(self, store: StateStore, writes: Sequence[WriteRequest], fields: Sequence[str]) -> None:
        for write in writes:
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
        writes = [to_write_request(op, f"operations[{i}]") for i, op in enumerate(request.operations)]
        store = self._store(request.storeName, "storeName")
        if not store.supports(Feature.TRANSACTIONAL):
            raise FeatureNotSupported(store.name, "transactions")
        for write in writes:
            check_features(store, write)
        await store.transact(writes)
        return empty_pb2.Empty()
