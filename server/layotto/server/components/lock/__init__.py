"""The Lock building block: non-blocking, non-reentrant distributed locks with expiry.

Components receive keys already namespaced by the runtime (see :func:`layotto.server.runtime.keys.namespaced_key`) and
implement three operations. A lock is held by one owner until it is unlocked or its
expiry passes; an expired lock is free for everyone, including for Unlock and
KeepAlive, which then answer LOCK_UNEXIST.
"""

from __future__ import annotations

import enum
from abc import abstractmethod

from layotto.server.components.base import Component


class LockStatus(enum.IntEnum):
    """Outcome of Unlock and KeepAlive; values are the wire enum's."""

    SUCCESS = 0
    LOCK_UNEXIST = 1
    LOCK_BELONG_TO_OTHERS = 2
    INTERNAL_ERROR = 3


class LockStore(Component):
    @abstractmethod
    async def try_lock(self, key: str, owner: str, expire_seconds: int) -> bool:
        """Take the lock if nobody holds it; never waits."""

    @abstractmethod
    async def unlock(self, key: str, owner: str) -> LockStatus: ...

    @abstractmethod
    async def keep_alive(self, key: str, owner: str, expire_seconds: int) -> LockStatus:
        """Push the expiry of a lock ``owner`` holds to now + ``expire_seconds``."""
