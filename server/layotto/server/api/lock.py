"""The Lock API: TryLock, Unlock, LockKeepAlive (Layotto) and TryLockAlpha1, UnlockAlpha1 (Dapr).

validate -> find the store -> namespace the key -> call -> convert the status.
"""

from __future__ import annotations

from typing import Any

from layotto.proto.dapr.runtime.v1 import lock_pb2 as dapr_lock
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.api.adapter import Context
from layotto.server.components.loader import ComponentSet
from layotto.server.components.lock import LockStore
from layotto.server.runtime.keys import namespaced_key
from layotto.server.runtime.validation import require_expire, require_resource, require_size, require_text


class LockApi:
    def __init__(self, components: ComponentSet, app_id: str) -> None:
        self._components = components
        self._app_id = app_id

    def _locate(self, store_name: str, resource: str) -> tuple[LockStore, str]:
        store = self._components.find("lock", store_name, "store_name")
        assert isinstance(store, LockStore)
        strategy = str(store.metadata.get("keyPrefix", "appid"))
        key = namespaced_key("lock", strategy, self._app_id, store.name, resource)
        what = f"lock store {store.name!r} ({store.spec.type}), counting the key's namespace"
        require_size(key, "resource_id", store.spec.limits.max_key_bytes, what)
        return store, key

    async def _try_lock(self, request: Any, expire: int, expire_field: str) -> bool:
        resource = require_resource(request.resource_id)
        owner = require_text(request.lock_owner, "lock_owner")
        require_expire(expire, expire_field)
        store, key = self._locate(request.store_name, resource)
        return await store.try_lock(key, owner, expire)

    async def _unlock(self, request: Any) -> int:
        resource = require_resource(request.resource_id)
        owner = require_text(request.lock_owner, "lock_owner")
        store, key = self._locate(request.store_name, resource)
        return int(await store.unlock(key, owner))

    async def TryLock(self, request: pb.TryLockRequest, context: Context) -> pb.TryLockResponse:
        return pb.TryLockResponse(success=await self._try_lock(request, request.expire, "expire"))

    async def Unlock(self, request: pb.UnlockRequest, context: Context) -> pb.UnlockResponse:
        return pb.UnlockResponse(status=await self._unlock(request))  # type: ignore[arg-type]

    async def LockKeepAlive(self, request: pb.LockKeepAliveRequest, context: Context) -> pb.LockKeepAliveResponse:
        resource = require_resource(request.resource_id)
        owner = require_text(request.lock_owner, "lock_owner")
        expire = require_expire(request.expire, "expire")
        store, key = self._locate(request.store_name, resource)
        status = await store.keep_alive(key, owner, expire)
        return pb.LockKeepAliveResponse(status=int(status))  # type: ignore[arg-type]

    async def TryLockAlpha1(self, request: dapr_lock.TryLockRequest, context: Context) -> dapr_lock.TryLockResponse:
        return dapr_lock.TryLockResponse(
            success=await self._try_lock(request, request.expiry_in_seconds, "expiry_in_seconds")
        )

    async def UnlockAlpha1(self, request: dapr_lock.UnlockRequest, context: Context) -> dapr_lock.UnlockResponse:
        return dapr_lock.UnlockResponse(status=await self._unlock(request))  # type: ignore[arg-type]
