"""etcd sequencer: a counter key advanced by compare-and-set transactions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aetcd import rpc

from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Feature
from layotto.server.components.etcd_client import ETCD_METADATA, EtcdConnection
from layotto.server.components.sequencer import BIGGER_THAN, SEGMENT_SIZE, Sequencer
from layotto.server.errors import BackendError

MAX_ATTEMPTS = 200


class EtcdSequencer(Sequencer):
    spec = ComponentSpec(
        type="etcd",
        building_block="sequencer",
        description="Counters in etcd v3, advanced by compare-and-set: durable and shared by every runtime.",
        features=frozenset({Feature.SEQUENCER_SEGMENTS}),
        metadata=(*ETCD_METADATA, KEY_PREFIX, SEGMENT_SIZE, BIGGER_THAN),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._etcd = self.connect(EtcdConnection(name))

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._etcd.open(metadata)

    async def next_block(self, key: str, size: int) -> int:
        raw = key.encode()
        for _ in range(MAX_ATTEMPTS):
            async with self._etcd.errors("Range"):
                found = await self._etcd.kv.Range(rpc.RangeRequest(key=raw), timeout=self._etcd.timeout)
            if found.kvs:
                current, revision = int(found.kvs[0].value), found.kvs[0].mod_revision
                guard = rpc.Compare(key=raw, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=revision)
            else:
                current = 0
                guard = rpc.Compare(key=raw, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)
            last = current + size
            put = rpc.RequestOp(request_put=rpc.PutRequest(key=raw, value=str(last).encode()))
            async with self._etcd.errors("Txn"):
                result = await self._etcd.kv.Txn(
                    rpc.TxnRequest(compare=[guard], success=[put]), timeout=self._etcd.timeout
                )
            if result.succeeded:
                return last
        raise BackendError(self.name, f"counter {key!r} stayed contended for {MAX_ATTEMPTS} attempts")
