"""``client.state``: the State API with Python types."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from layotto.client._transport import Transport
from layotto.client._ttl import ttl_seconds
from layotto.client._values import Value, decode_json, encode, string_map
from layotto.proto.runtime.v1 import runtime_pb2 as pb

__all__ = ["Consistency", "StateClient", "StateDelete", "StateItem", "StateWrite"]

TTL_KEY = "ttlInSeconds"
TTL_EXPIRE_KEY = "ttlExpireTime"


class Consistency(enum.Enum):
    """How fresh a read must be (stores that cannot choose ignore it)."""

    EVENTUAL = "eventual"  # any replica may answer
    STRONG = "strong"  # the read sees every write acknowledged before it

    def to_wire(self) -> pb.StateOptions.StateConsistency.ValueType:
        if self is Consistency.STRONG:
            return pb.StateOptions.CONSISTENCY_STRONG
        return pb.StateOptions.CONSISTENCY_EVENTUAL


@dataclass(frozen=True)
class StateItem:
    """A key as read from a store. ``etag`` is None when the key does not exist."""

    key: str
    value: bytes
    etag: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # set on a bulk read item that failed

    @property
    def found(self) -> bool:
        return self.etag is not None

    @property
    def expires_at(self) -> dt.datetime | None:
        raw = self.metadata.get(TTL_EXPIRE_KEY)
        return dt.datetime.fromisoformat(raw) if raw else None

    def text(self) -> str:
        return self.value.decode()

    def json(self) -> Any:
        return decode_json(self.value)


@dataclass(frozen=True)
class StateWrite:
    """One key to save; also the 'upsert' step of a transaction. ``ttl``: see :meth:`StateClient.save`."""

    key: str
    value: Value
    etag: str | None = None
    ttl: float | dt.timedelta | None = None
    first_write: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StateDelete:
    """One key to delete; also the 'delete' step of a transaction."""

    key: str
    etag: str | None = None
    first_write: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)


def _options(first_write: bool) -> pb.StateOptions | None:
    return pb.StateOptions(concurrency=pb.StateOptions.CONCURRENCY_FIRST_WRITE) if first_write else None


def _item(op: StateWrite | StateDelete) -> pb.StateItem:
    if isinstance(op, StateWrite):
        return _wire_item(
            op.key, encode(op.value), etag=op.etag, ttl=op.ttl, first_write=op.first_write, metadata=op.metadata
        )
    return _wire_item(op.key, b"", etag=op.etag, ttl=None, first_write=op.first_write, metadata=op.metadata)


def _wire_item(
    key: str,
    value: bytes,
    *,
    etag: str | None,
    ttl: float | dt.timedelta | None,
    first_write: bool,
    metadata: Mapping[str, str],
) -> pb.StateItem:
    """The wire item; unset fields are left out of the constructor (each costs upb a conversion)."""
    item = pb.StateItem(key=key, value=value)
    if metadata:
        item.metadata.update(string_map(metadata, "metadata"))
    if ttl is not None:
        item.metadata[TTL_KEY] = str(ttl_seconds(ttl))
    if etag is not None:
        item.etag.value = etag
    if first_write:
        item.options.concurrency = pb.StateOptions.CONCURRENCY_FIRST_WRITE
    return item


def _replayable(items: Iterable[Any]) -> bool:
    """Writes without an etag or first-write check give the same result when applied twice."""
    return not any(item.HasField("etag") or item.HasField("options") for item in items)


def _read(key: str, data: bytes, etag: str, metadata: Mapping[str, str], error: str = "") -> StateItem:
    return StateItem(key, data, etag or None, dict(metadata) if metadata else {}, error or None)


class StateClient:
    """State operations; every method takes a per-call ``timeout`` in seconds."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def get(
        self,
        store: str,
        key: str,
        *,
        consistency: Consistency | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> StateItem:
        """The key's value and etag (``etag`` None when it does not exist)."""
        request = pb.GetStateRequest(store_name=store, key=key, metadata=string_map(metadata, "metadata"))
        if consistency is not None:
            request.consistency = Consistency(consistency).to_wire()
        response = await self._t.unary("GetState", request, timeout, idempotent=True)
        return _read(key, response.data, response.etag, response.metadata)

    async def get_bulk(
        self,
        store: str,
        keys: Sequence[str],
        *,
        parallelism: int = 0,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> list[StateItem]:
        request = pb.GetBulkStateRequest(
            store_name=store, keys=keys, parallelism=parallelism, metadata=string_map(metadata, "metadata")
        )
        response = await self._t.unary("GetBulkState", request, timeout, idempotent=True)
        return [_read(i.key, i.data, i.etag, i.metadata, i.error) for i in response.items]

    async def save(
        self,
        store: str,
        key: str,
        value: Value,
        *,
        etag: str | None = None,
        ttl: float | dt.timedelta | None = None,
        first_write: bool = False,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Save ``value`` under ``key``. ``ttl`` (seconds or a timedelta) expires it: None is no
        TTL, a positive duration is sent as whole seconds rounded up, anything else (0, -1, NaN,
        infinity, a bool) raises InvalidArgument (field ``ttl``) before any call."""
        item = _wire_item(key, encode(value), etag=etag, ttl=ttl, first_write=first_write, metadata=metadata or {})
        request = pb.SaveStateRequest(store_name=store, states=[item])
        replayable = etag is None and not first_write  # what _replayable answers for this one item
        await self._t.unary("SaveState", request, timeout, idempotent=replayable)

    async def save_bulk(self, store: str, writes: Iterable[StateWrite], *, timeout: float | None = None) -> None:
        """Save several keys; each applies on its own (see BulkWriteError)."""
        request = pb.SaveStateRequest(store_name=store, states=[_item(w) for w in writes])
        await self._t.unary("SaveState", request, timeout, idempotent=_replayable(request.states))

    async def delete(
        self,
        store: str,
        key: str,
        *,
        etag: str | None = None,
        first_write: bool = False,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        request = pb.DeleteStateRequest(
            store_name=store,
            key=key,
            etag=pb.Etag(value=etag) if etag is not None else None,
            options=_options(first_write),
            metadata=string_map(metadata, "metadata"),
        )
        await self._t.unary("DeleteState", request, timeout, idempotent=_replayable([request]))

    async def delete_bulk(self, store: str, keys: Iterable[str | StateDelete], *, timeout: float | None = None) -> None:
        deletes = [k if isinstance(k, StateDelete) else StateDelete(k) for k in keys]
        request = pb.DeleteBulkStateRequest(store_name=store, states=[_item(d) for d in deletes])
        await self._t.unary("DeleteBulkState", request, timeout, idempotent=_replayable(request.states))

    async def transaction(
        self,
        store: str,
        operations: Iterable[StateWrite | StateDelete],
        *,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Apply the operations in order, atomically: all of them or none."""
        ops = [
            pb.TransactionalStateOperation(
                operationType="upsert" if isinstance(op, StateWrite) else "delete", request=_item(op)
            )
            for op in operations
        ]
        request = pb.ExecuteStateTransactionRequest(
            storeName=store, operations=ops, metadata=string_map(metadata, "metadata")
        )
        replayable = _replayable([op.request for op in request.operations])
        await self._t.unary("ExecuteStateTransaction", request, timeout, idempotent=replayable)
