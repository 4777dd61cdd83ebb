"""In-memory lock store: the reference implementation, for one runtime."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Feature
from layotto.server.components.lock import LockStatus, LockStore


class InMemoryLockStore(LockStore):
    spec = ComponentSpec(
        type="in-memory",
        building_block="lock",
        description="Locks in the runtime's memory: exact, but only among the clients of one runtime.",
        features=frozenset({Feature.LOCK_KEEP_ALIVE}),
        metadata=(KEY_PREFIX,),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._held: dict[str, tuple[str, float]] = {}

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._held.clear()

    def _holder(self, key: str) -> str | None:
        held = self._held.get(key)
        if held is None:
            return None
        if held[1] <= time.monotonic():
            del self._held[key]
            return None
        return held[0]

    async def try_lock(self, key: str, owner: str, expire_seconds: int) -> bool:
        if self._holder(key) is not None:
            return False
        self._held[key] = (owner, time.monotonic() + expire_seconds)
        if len(self._held) > 10_000:  # purge expired locks now and then
            now = time.monotonic()
            self._held = {k: v for k, v in self._held.items() if v[1] > now}
        return True

    async def unlock(self, key: str, owner: str) -> LockStatus:
        holder = self._holder(key)
        if holder is None:
            return LockStatus.LOCK_UNEXIST
        if holder != owner:
            return LockStatus.LOCK_BELONG_TO_OTHERS
        del self._held[key]
        return LockStatus.SUCCESS

    async def keep_alive(self, key: str, owner: str, expire_seconds: int) -> LockStatus:
        holder = self._holder(key)
        if holder is None:
            return LockStatus.LOCK_UNEXIST
        if holder != owner:
            return LockStatus.LOCK_BELONG_TO_OTHERS
        self._held[key] = (owner, time.monotonic() + expire_seconds)
        return LockStatus.SUCCESS
