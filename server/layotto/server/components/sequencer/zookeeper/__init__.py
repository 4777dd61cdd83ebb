"""ZooKeeper sequencer: a persistent znode per key holding the counter, advanced by
compare-and-set on the znode's version. (Layotto keeps its counter in the version of an
ephemeral znode, which vanishes with the session; a persistent node does not.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Feature
from layotto.server.components.sequencer import BIGGER_THAN, SEGMENT_SIZE, Sequencer
from layotto.server.components.zookeeper_client import ZOOKEEPER_METADATA, ZookeeperConnection
from layotto.server.errors import BackendError

MAX_ATTEMPTS = 200


class ZookeeperSequencer(Sequencer):
    spec = ComponentSpec(
        type="zookeeper",
        building_block="sequencer",
        description="Counters in persistent ZooKeeper znodes, advanced by compare-and-set: durable and shared.",
        features=frozenset({Feature.SEQUENCER_SEGMENTS}),
        metadata=(*ZOOKEEPER_METADATA, KEY_PREFIX, SEGMENT_SIZE, BIGGER_THAN),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._zoo = self.connect(ZookeeperConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._zoo.open(metadata, "sequences")

    def _advance(self, zk: KazooClient, path: str, size: int) -> int:
        for _ in range(MAX_ATTEMPTS):
            try:
                data, stat = zk.get(path)
            except NoNodeError:
                try:
                    zk.create(path, str(size).encode())
                    return size
                except NodeExistsError:
                    continue
            last = int(data or b"0") + size
            try:
                zk.set(path, str(last).encode(), version=stat.version)
                return last
            except BadVersionError:
                continue
        raise BackendError(self.name, f"counter at {path} stayed contended for {MAX_ATTEMPTS} attempts")

    async def next_block(self, key: str, size: int) -> int:
        path = self._zoo.path(key)
        return await self._zoo.run(lambda zk: self._advance(zk, path, size), "advance counter")
