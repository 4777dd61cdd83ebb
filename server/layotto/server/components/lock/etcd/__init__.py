"""etcd lock store: a lease of ``expire`` seconds and a create-revision transaction.

TryLock puts the key with the owner as value under a fresh lease only if the key does
not exist (create_revision == 0); etcd deletes it when the lease runs out. Unlock and
KeepAlive compare the value with the owner in a transaction; KeepAlive moves the key to
a new lease of the requested length (a lease's own keep-alive can only renew its
original TTL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aetcd import rpc

from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Feature
from layotto.server.components.etcd_client import ETCD_METADATA, EtcdConnection
from layotto.server.components.lock import LockStatus, LockStore


class EtcdLockStore(LockStore):
    spec = ComponentSpec(
        type="etcd",
        building_block="lock",
        description="Locks in etcd v3, expiring with leases: shared by every runtime on the same cluster.",
        features=frozenset({Feature.LOCK_KEEP_ALIVE}),
        metadata=(*ETCD_METADATA, KEY_PREFIX),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._etcd = self.connect(EtcdConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._etcd.open(metadata)

    async def _txn(self, compares: list[Any], success: list[Any], failure: list[Any] | None = None) -> Any:
        async with self._etcd.errors("Txn"):
            return await self._etcd.kv.Txn(
                rpc.TxnRequest(compare=compares, success=success, failure=failure or []), timeout=self._etcd.timeout
            )

    async def try_lock(self, key: str, owner: str, expire_seconds: int) -> bool:
        lease = await self._etcd.grant(expire_seconds)
        absent = rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=owner.encode(), lease=lease))
        result = await self._txn([absent], [put])
        if not result.succeeded:
            await self._etcd.revoke(lease)
        return bool(result.succeeded)

    def _owned_by(self, key: str, owner: str) -> Any:
        return rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.VALUE, value=owner.encode())

    async def _status_when_not_owned(self, result: Any) -> LockStatus:
        ranged = result.responses[0].response_range
        return LockStatus.LOCK_BELONG_TO_OTHERS if ranged.kvs else LockStatus.LOCK_UNEXIST

    async def unlock(self, key: str, owner: str) -> LockStatus:
        read = rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))
        delete = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode(), prev_kv=True))
        result = await self._txn([self._owned_by(key, owner)], [delete], [read])
        if not result.succeeded:
            return await self._status_when_not_owned(result)
        previous = result.responses[0].response_delete_range.prev_kvs
        if previous and previous[0].lease:
            await self._etcd.revoke(previous[0].lease)
        return LockStatus.SUCCESS

    async def keep_alive(self, key: str, owner: str, expire_seconds: int) -> LockStatus:
        lease = await self._etcd.grant(expire_seconds)
        read = rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))
        put = rpc.RequestOp(
            request_put=rpc.PutRequest(key=key.encode(), value=owner.encode(), lease=lease, prev_kv=True)
        )
        result = await self._txn([self._owned_by(key, owner)], [put], [read])
        if not result.succeeded:
            await self._etcd.revoke(lease)
            return await self._status_when_not_owned(result)
        previous = result.responses[0].response_put.prev_kv
        if previous.lease:
            await self._etcd.revoke(previous.lease)
        return LockStatus.SUCCESS
