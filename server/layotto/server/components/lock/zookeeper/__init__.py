"""ZooKeeper lock store: a znode per lock holding its owner and length, with expiry read
from ZooKeeper's own clock.

A znode's ``mtime`` is set by the ZooKeeper leader when the node is written, so a lock
taken or kept alive at ``mtime`` for ``expire`` ms has expired once the leader's clock
passes ``mtime + expire``; the leader's current time is read by touching a clock znode.
Every change is a compare-and-set on the znode's version, so two runtimes never both
win. (Ephemeral nodes would tie the lock to a ZooKeeper session, which the client keeps
alive as long as the runtime runs, so the lock would never expire by time.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Feature
from layotto.server.components.lock import LockStatus, LockStore
from layotto.server.components.zookeeper_client import ZOOKEEPER_METADATA, ZookeeperConnection


def _encode(owner: str, expire_ms: int) -> bytes:
    return f"{expire_ms}\n{owner}".encode()


def _decode(data: bytes) -> tuple[str, int]:
    expire_ms, _, owner = data.decode().partition("\n")
    return owner, int(expire_ms)


class ZookeeperLockStore(LockStore):
    spec = ComponentSpec(
        type="zookeeper",
        building_block="lock",
        description="Locks as ZooKeeper znodes expiring by ZooKeeper's clock: shared by every runtime on the ensemble.",
        features=frozenset({Feature.LOCK_KEEP_ALIVE}),
        metadata=(*ZOOKEEPER_METADATA, KEY_PREFIX),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._zoo = self.connect(ZookeeperConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._zoo.open(metadata, "locks")
        self._clock = f"{self._zoo.base}.clock"
        await self._zoo.run(lambda zk: zk.ensure_path(self._clock))

    def _server_now(self, zk: KazooClient) -> int:
        return int(zk.set(self._clock, b"").mtime)

    def _holder(self, zk: KazooClient, path: str) -> tuple[str, int] | None:
        """(owner, version) of the live lock at path, or None if absent or expired."""
        try:
            data, stat = zk.get(path)
        except NoNodeError:
            return None
        owner, expire_ms = _decode(data)
        if stat.mtime + expire_ms <= self._server_now(zk):
            return None
        return owner, int(stat.version)

    def _try_lock(self, zk: KazooClient, path: str, owner: str, expire_ms: int) -> bool:
        try:
            zk.create(path, _encode(owner, expire_ms))
            return True
        except NodeExistsError:
            pass
        try:
            data, stat = zk.get(path)
        except NoNodeError:
            return False  # released just now: the caller may try again
        holder_expire = _decode(data)[1]
        if stat.mtime + holder_expire > self._server_now(zk):
            return False
        try:  # expired: take it over, unless someone else does first
            zk.set(path, _encode(owner, expire_ms), version=stat.version)
            return True
        except (BadVersionError, NoNodeError):
            return False

    def _release_or_extend(self, zk: KazooClient, path: str, owner: str, expire_ms: int | None) -> LockStatus:
        holder = self._holder(zk, path)
        if holder is None:
            return LockStatus.LOCK_UNEXIST
        if holder[0] != owner:
            return LockStatus.LOCK_BELONG_TO_OTHERS
        try:
            if expire_ms is None:
                zk.delete(path, version=holder[1])
            else:
                zk.set(path, _encode(owner, expire_ms), version=holder[1])
        except (BadVersionError, NoNodeError):
            return LockStatus.LOCK_UNEXIST  # it expired and changed hands meanwhile
        return LockStatus.SUCCESS

    async def try_lock(self, key: str, owner: str, expire_seconds: int) -> bool:
        path = self._zoo.path(key)
        return await self._zoo.run(lambda zk: self._try_lock(zk, path, owner, expire_seconds * 1000), "create lock")

    async def unlock(self, key: str, owner: str) -> LockStatus:
        path = self._zoo.path(key)
        return await self._zoo.run(lambda zk: self._release_or_extend(zk, path, owner, None), "release lock")

    async def keep_alive(self, key: str, owner: str, expire_seconds: int) -> LockStatus:
        path = self._zoo.path(key)
        return await self._zoo.run(
            lambda zk: self._release_or_extend(zk, path, owner, expire_seconds * 1000), "extend lock"
        )
