"""Distributed locks, shared by every front end: validate, find the store, namespace the key, call."""

from __future__ import annotations

from layotto.server.components.loader import ComponentSet
from layotto.server.components.lock import LockStatus, LockStore
from layotto.server.runtime.keys import namespaced_key
from layotto.server.runtime.validation import require_expire, require_resource, require_storable, require_text


class LockService:
    """Locks of one app (``app_id`` namespaces the keys, unless a store's ``keyPrefix`` says otherwise).

    Every method raises InvalidArgument naming ``resource_id``, ``lock_owner`` or the expiry field,
    ComponentNotFound, and the store's errors.
    """

    def __init__(self, components: ComponentSet, app_id: str) -> None:
        self._components = components
        self._app_id = app_id

    def _locate(self, store_name: str, resource: str, owner: str) -> tuple[LockStore, str]:
        store = self._components.find("lock", store_name, "store_name")
        assert isinstance(store, LockStore)
        strategy = str(store.metadata.get("keyPrefix", "appid"))
        key = namespaced_key("lock", strategy, self._app_id, store.name, resource)
        what = f"lock store {store.name!r} ({store.spec.type}), counting the key's namespace"
        require_storable(key, "resource_id", store.spec.limits, what)
        require_storable(owner, "lock_owner", store.spec.limits, what, sized=False)
        return store, key

    async def try_lock(
        self, store_name: str, resource_id: str, owner: str, expire_seconds: int, expire_field: str = "expire"
    ) -> bool:
        """True when ``owner`` now holds the lock for ``expire_seconds`` (1 .. 7 days)."""
        resource = require_resource(resource_id)
        require_text(owner, "lock_owner")
        require_expire(expire_seconds, expire_field)
        store, key = self._locate(store_name, resource, owner)
        return await store.try_lock(key, owner, expire_seconds)

    async def unlock(self, store_name: str, resource_id: str, owner: str) -> LockStatus:
        resource = require_resource(resource_id)
        require_text(owner, "lock_owner")
        store, key = self._locate(store_name, resource, owner)
        return await store.unlock(key, owner)

    async def keep_alive(self, store_name: str, resource_id: str, owner: str, expire_seconds: int) -> LockStatus:
        resource = require_resource(resource_id)
        require_text(owner, "lock_owner")
        require_expire(expire_seconds, "expire")
        store, key = self._locate(store_name, resource, owner)
        return await store.keep_alive(key, owner, expire_seconds)
