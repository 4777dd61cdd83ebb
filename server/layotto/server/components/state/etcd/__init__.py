"""etcd v3 state store: the etag is the key's mod revision (cluster-wide and never
reused), TTL is a lease, compare-and-set and transactions are etcd Txns."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from aetcd import rpc

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, Limits, MetadataField
from layotto.server.components.etcd_client import ETCD_METADATA, EtcdConnection
from layotto.server.components.state import (
    Concurrency,
    DeleteRequest,
    SetRequest,
    StateEntry,
    StateStore,
    WriteRequest,
    parse_etag,
)
from layotto.server.errors import EtagMismatch, InvalidArgument

_WRITTEN_IN_TXN = -1  # a key an earlier step of the same transaction wrote: its etag is unknowable


class EtcdStateStore(StateStore):
    spec = ComponentSpec(
        type="etcd",
        building_block="state",
        description="Keeps state in etcd v3: shared by every runtime on the same cluster.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL}),
        # etcd's defaults: a request of at most 1.5 MiB (--max-request-bytes), leaving room for
        # the request's own fields, and 128 operations in one Txn (--max-txn-ops)
        limits=Limits(
            max_key_bytes=65_536,
            max_value_bytes=1_500_000,
            max_transaction_bytes=1_565_536,
            max_transaction_items=128,
        ),
        metadata=(
            *ETCD_METADATA,
            MetadataField("keyPrefixPath", "Prefix of every key, e.g. /myapp (keys become /myapp/KEY).", default=""),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._etcd = self.connect(EtcdConnection(name))
        self._prefix = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        prefix = str(metadata["keyPrefixPath"]).rstrip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        await self._etcd.open(metadata)
        self._kv, self._lease, self._timeout = self._etcd.kv, self._etcd.lease, self._etcd.timeout

    def _key(self, key: str) -> bytes:
        return (self._prefix + key).encode()

    async def get(self, key: str) -> StateEntry | None:
        async with self._etcd.errors("Range"):
            found = await self._kv.Range(rpc.RangeRequest(key=self._key(key)), timeout=self._timeout)
            if not found.kvs:
                return None
            kv = found.kvs[0]
            expire_at = None
            if kv.lease:
                ttl = await self._lease.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=kv.lease), timeout=self._timeout)
                if ttl.TTL < 0:
                    return None  # the lease has run out; etcd is about to delete the key
                expire_at = time.time() + ttl.TTL
        return StateEntry(key, bytes(kv.value), str(kv.mod_revision), expire_at)

    async def set(self, request: SetRequest) -> None:
        await self.transact([request])

    async def delete(self, request: DeleteRequest) -> None:
        await self.transact([request])

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        """One etcd Txn: compares from the first step on each key, the last step's effect per key.

        etcd refuses a Txn that writes one key twice, so steps on the same key are folded
        into their final effect after checking them against the earlier steps.
        """
        compares: list[Any] = []
        final: dict[str, WriteRequest] = {}
        seen: dict[str, int | None] = {}  # key -> _WRITTEN_IN_TXN, or None when deleted in this txn
        for request in requests:
            etag = parse_etag(request)
            first_write = isinstance(request, SetRequest) and request.concurrency is Concurrency.FIRST_WRITE
            if request.key in seen:
                state = seen[request.key]
                if etag is not None or (first_write and state == _WRITTEN_IN_TXN):
                    raise EtagMismatch(request.key)
            elif etag is not None:
                compares.append(
                    rpc.Compare(
                        key=self._key(request.key), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=etag
                    )
                )
            elif first_write:
                compares.append(
                    rpc.Compare(
                        key=self._key(request.key),
                        result=rpc.Compare.EQUAL,
                        target=rpc.Compare.CREATE,
                        create_revision=0,
                    )
                )
            seen[request.key] = _WRITTEN_IN_TXN if isinstance(request, SetRequest) else None
            final.pop(request.key, None)
            final[request.key] = request
        operations = [await self._operation(request) for request in final.values()]
        async with self._etcd.errors("Txn"):
            result = await self._kv.Txn(rpc.TxnRequest(compare=compares, success=operations), timeout=self._timeout)
        if not result.succeeded:
            raise EtagMismatch(await self._first_mismatch(requests))

    async def _operation(self, request: WriteRequest) -> Any:
        if isinstance(request, DeleteRequest):
            return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._key(request.key)))
        lease = await self._etcd.grant(request.ttl_seconds) if request.ttl_seconds else 0
        return rpc.RequestOp(request_put=rpc.PutRequest(key=self._key(request.key), value=request.value, lease=lease))

    async def _first_mismatch(self, requests: Sequence[WriteRequest]) -> str:
        """The key whose check failed, for the error message."""
        for request in requests:
            if request.etag or (isinstance(request, SetRequest) and request.concurrency is Concurrency.FIRST_WRITE):
                current = await self.get(request.key)
                if request.etag and (current is None or current.etag != request.etag):
                    return request.key
                if not request.etag and current is not None:
                    return request.key
        raise InvalidArgument("operations", "etcd refused the transaction without a failed check")  # pragma: no cover
