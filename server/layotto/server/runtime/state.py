"""The State building block's semantics, shared by every front end (gRPC, HTTP).

A front end converts its request into the plain dataclasses of
:mod:`layotto.server.components.state` (:class:`SetRequest`, :class:`DeleteRequest`), with
the path of each item in its own request (``states[0]``, ``operations[1].request``) so
errors name the field the client sent; :class:`StateService` then finds the store, checks
limits and features, calls the store and reports etag errors at that path. Nothing here
knows a wire format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Mapping, Sequence
from typing import cast

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
from layotto.server.components.state.query import Query, QueryResult
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
    require_key,
    require_range,
    require_size,
    require_storable,
)

TTL_EXPIRE_KEY = "ttlExpireTime"
#: the latest expiry a read reports; a stored one beyond it (or not a number) is reported as this
LATEST_REPORTED_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
BulkResult = StateEntry | LayottoError | None


def sub(field: str, name: str) -> str:
    """The path of ``name`` inside ``field`` (the request itself when ``field`` is empty)."""
    return f"{field}.{name}" if field else name


def set_request(
    key: str,
    value: bytes,
    *,
    etag: str | None,
    metadata: Mapping[str, str],
    concurrency: Concurrency,
    field: str,
) -> SetRequest:
    """A save of ``value`` at ``key``: the key required, ``ttlInSeconds`` of ``metadata`` checked.

    ``field`` is the item's path (``states[0]``); an empty ``etag`` means none.
    Raises InvalidArgument naming ``field.key`` or ``field.metadata.ttlInSeconds``.
    """
    return SetRequest(
        key=require_key(key, f"{field}.key"),
        value=value,
        etag=etag or None,
        ttl_seconds=parse_ttl(metadata, f"{field}.metadata"),
        concurrency=concurrency,
    )


def delete_request(key: str, *, etag: str | None, concurrency: Concurrency, field: str) -> DeleteRequest:
    """A delete of ``key`` (``field`` is the item's path, empty for the request itself)."""
    return DeleteRequest(key=require_key(key, sub(field, "key")), etag=etag or None, concurrency=concurrency)


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


def _what(store: StateStore) -> str:
    return f"state store {store.name!r} ({store.spec.type})"


def check_limits(store: StateStore, write: WriteRequest, field: str) -> None:
    """Refuse a key or value the store cannot take, naming the field and the limit."""
    limits = store.spec.limits
    require_storable(write.key, sub(field, "key"), limits, _what(store))
    if isinstance(write, SetRequest):
        require_size(write.value, f"{field}.value", limits.max_value_bytes, _what(store))


def check_transaction_limits(store: StateStore, writes: Sequence[WriteRequest]) -> None:
    limits = store.spec.limits
    if limits.max_transaction_items is not None and len(writes) > limits.max_transaction_items:
        raise InvalidArgument(
            "operations",
            f"{len(writes)} operations is over the {limits.max_transaction_items}-operation limit of {_what(store)}",
        )
    if limits.max_transaction_bytes is not None:
        size = sum(len(w.key.encode()) + (len(w.value) if isinstance(w, SetRequest) else 0) for w in writes)
        if size > limits.max_transaction_bytes:
            raise InvalidArgument(
                "operations",
                f"keys and values total {size} bytes, over the {limits.max_transaction_bytes}-byte limit"
                f" of {_what(store)}",
            )


def check_features(store: StateStore, request: WriteRequest) -> None:
    if request.etag and not store.supports(Feature.ETAG):
        raise FeatureNotSupported(store.name, "etags")
    if request.concurrency is Concurrency.FIRST_WRITE and not store.supports(Feature.FIRST_WRITE):
        raise FeatureNotSupported(store.name, "first-write concurrency")
    if isinstance(request, SetRequest) and request.ttl_seconds and not store.supports(Feature.TTL):
        raise FeatureNotSupported(store.name, TTL_KEY)


def locate_etag_error(error: LayottoError, write: WriteRequest, field: str) -> LayottoError:
    """The same etag error, naming the request field it came from (a first-write save that sent
    no etag: a first-write conflict, naming its ``options.concurrency``)."""
    etag_field = sub(field, "etag")
    if isinstance(error, EtagMismatch):
        if isinstance(write, SetRequest) and write.concurrency is Concurrency.FIRST_WRITE and not write.etag:
            return EtagMismatch(write.key, sub(field, "options.concurrency"), first_write=True)
        return EtagMismatch(write.key, etag_field)
    if isinstance(error, EtagInvalid):
        return EtagInvalid(write.key, write.etag or "", etag_field)
    return error


class StateService:
    """Get, bulk get, write (save/delete, one or many) and transact on the configured state stores.

    Every method raises the catalogued :class:`~layotto.server.errors.LayottoError` s:
    ComponentNotFound / NoComponentsConfigured for the store name, InvalidArgument and
    PayloadTooLarge for keys and values over the store's limits, FeatureNotSupported, and the
    store's own (EtagMismatch, EtagInvalid, BulkPartialFailure, BackendUnavailable, ...).
    """

    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    def store(self, name: str, field: str = "store_name") -> StateStore:
        # the state registry only holds state stores (an isinstance check on the ABC costs every call)
        return cast(StateStore, self._components.find("state", name, field))

    def get(self, store_name: str, key: str, key_field: str = "key") -> Awaitable[StateEntry | None]:
        """Awaitable: the entry at ``key``, or None when there is none. The arguments are checked at
        once (the errors above raise here); the store's own when awaited. Not a coroutine itself: the
        store's coroutine is handed back, one frame less on every resumption of a read."""
        require_key(key, key_field)
        store = self.store(store_name)
        require_storable(key, key_field, store.spec.limits, lambda: _what(store))  # named only when refused
        return store.get(key)

    async def bulk_get(
        self, store_name: str, keys: Sequence[str], parallelism: int = 0, field: str = "keys"
    ) -> list[tuple[str, BulkResult]]:
        """(key, entry or None or the item's error) for each key, in order."""
        require_count(keys, field)
        keys = [require_key(k, f"{field}[{i}]") for i, k in enumerate(keys)]
        require_range(parallelism, "parallelism", 0, MAX_PARALLELISM)
        store = self.store(store_name)
        for i, key in enumerate(keys):
            require_storable(key, f"{field}[{i}]", store.spec.limits, _what(store))
        results = await store.bulk_get(keys)
        return list(zip(keys, results, strict=True))

    async def write(self, store_name: str, writes: Sequence[WriteRequest], fields: Sequence[str]) -> None:
        """Apply saves and deletes one by one (not atomically): ``fields[i]`` is the path of ``writes[i]``.

        One write fails with its own error; of several, those that failed raise BulkPartialFailure
        (the others are applied).
        """
        store = self.store(store_name)
        if not writes:
            return
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

    async def query(self, store_name: str, query: Query) -> QueryResult:
        """The page of entries ``query`` selects (parse it with
        :func:`~layotto.server.runtime.state_query.parse_query`); FeatureNotSupported for a store
        that does not declare QUERY_API."""
        store = self.store(store_name)
        if not store.supports(Feature.QUERY):
            raise FeatureNotSupported(store.name, "queries")
        return await store.query(query)

    async def transact(self, store_name: str, writes: Sequence[WriteRequest], store_field: str = "storeName") -> None:
        """Apply all ``writes`` atomically (``operations[i].request`` is the path of ``writes[i]``)."""
        store = self.store(store_name, store_field)
        if not store.supports(Feature.TRANSACTIONAL):
            raise FeatureNotSupported(store.name, "transactions")
        for i, write in enumerate(writes):
            check_limits(store, write, f"operations[{i}].request")
            check_features(store, write)
        check_transaction_limits(store, writes)
        await store.transact(writes)
