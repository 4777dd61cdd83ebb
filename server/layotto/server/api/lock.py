"""The Lock API over gRPC: TryLock, Unlock, LockKeepAlive (Layotto) and TryLockAlpha1, UnlockAlpha1
(Dapr); the semantics are :class:`~layotto.server.runtime.lock.LockService`'s (shared with HTTP)."""

from __future__ import annotations

from layotto.proto.dapr.runtime.v1 import lock_pb2 as dapr_lock
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.api.adapter import Context
from layotto.server.runtime.lock import LockService


class LockApi:
    def __init__(self, locks: LockService) -> None:
        self._locks = locks

    async def TryLock(self, request: pb.TryLockRequest, context: Context) -> pb.TryLockResponse:
        success = await self._locks.try_lock(
            request.store_name, request.resource_id, request.lock_owner, request.expire
        )
        return pb.TryLockResponse(success=success)

    async def Unlock(self, request: pb.UnlockRequest, context: Context) -> pb.UnlockResponse:
        status = await self._locks.unlock(request.store_name, request.resource_id, request.lock_owner)
        return pb.UnlockResponse(status=int(status))  # type: ignore[arg-type]

    async def LockKeepAlive(self, request: pb.LockKeepAliveRequest, context: Context) -> pb.LockKeepAliveResponse:
        status = await self._locks.keep_alive(
            request.store_name, request.resource_id, request.lock_owner, request.expire
        )
        return pb.LockKeepAliveResponse(status=int(status))  # type: ignore[arg-type]

    async def TryLockAlpha1(self, request: dapr_lock.TryLockRequest, context: Context) -> dapr_lock.TryLockResponse:
        success = await self._locks.try_lock(
            request.store_name, request.resource_id, request.lock_owner, request.expiry_in_seconds, "expiry_in_seconds"
        )
        return dapr_lock.TryLockResponse(success=success)

    async def UnlockAlpha1(self, request: dapr_lock.UnlockRequest, context: Context) -> dapr_lock.UnlockResponse:
        status = await self._locks.unlock(request.store_name, request.resource_id, request.lock_owner)
        return dapr_lock.UnlockResponse(status=int(status))  # type: ignore[arg-type]
