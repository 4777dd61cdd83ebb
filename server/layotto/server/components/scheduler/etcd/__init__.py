"""etcd scheduler: items in etcd v3, shared by every runtime on the same cluster.

Keys (``<p>`` is the ``keyPrefix`` metadata): ``<p>item/<key>`` holds an item (its due time in
``repr`` and its payload, separated by a newline); ``<p>due/<partition><due time>/<key>`` indexes it
by due time (a fixed-width decimal, so the key order is the time order); ``<p>lease/<key>`` is the
claim on it, attached to an etcd lease of ``lease_seconds``, so etcd removes the claim of a runtime
that crashed and the item is claimed again when the lease ends. Every write is one transaction:
a claim puts the claim key only if there is none (``create_revision == 0``) and the index entry
read is still the one written (its ``mod_revision``), so two runtimes never claim one occurrence;
ack, reschedule and delete compare the item's ``mod_revision`` with the one they read (a batch of
acks: one transaction reading the items, one deleting them). Times are
the runtimes' clocks (epoch seconds): keep them in sync (NTP).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from aetcd import rpc

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, MetadataField
from layotto.server.components.etcd_client import ETCD_METADATA, EtcdConnection
from layotto.server.components.scheduler import ScheduledItem, Scheduler, partition_of
from layotto.server.errors import BackendError

#: etcd refuses a transaction of more than 128 operations (``--max-txn-ops``): two compares per item
_CLAIM_BATCH = 50
#: items acknowledged per transaction: three deletes per item
_ACK_BATCH = 40
_ATTEMPTS = 20  # compare-and-write rounds before a write that keeps losing races gives up


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for every key starting with ``prefix``."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


def due_text(due_at: float) -> str:
    """A due time as a fixed-width decimal (microseconds): the order of the texts is the time order."""
    return f"{max(due_at, 0.0):024.6f}"


def encode(item: ScheduledItem) -> bytes:
    return repr(item.due_at).encode() + b"\n" + item.payload


def decode(key: str, value: bytes) -> ScheduledItem:
    due, _, payload = value.partition(b"\n")
    return ScheduledItem(key, float(due), payload)


class EtcdScheduler(Scheduler):
    spec = ComponentSpec(
        type="etcd",
        building_block="scheduler",
        features=frozenset({Feature.SHARED}),
        description="Scheduled items in etcd v3, claimed with transactions under leases: shared by every runtime "
        "on the same cluster, each item fired by one of them, claimed again when a crashed runtime's lease ends.",
        metadata=(
            *ETCD_METADATA,
            MetadataField("keyPrefix", "Prefix of the keys holding the items.", default="layotto-scheduler/"),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._etcd = self.connect(EtcdConnection(name))
        self._prefix = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._prefix = str(metadata["keyPrefix"])
        await self._etcd.open(metadata)

    def _item_key(self, key: str) -> bytes:
        return f"{self._prefix}item/{key}".encode()

    def _claim_key(self, key: str) -> bytes:
        return f"{self._prefix}lease/{key}".encode()

    def _due_prefix(self, partition: str) -> str:
        return f"{self._prefix}due/{partition}"

    def _index_key(self, key: str, due_at: float) -> bytes:
        return f"{self._due_prefix(partition_of(key))}{due_text(due_at)}/{key}".encode()

    async def _range(self, key: bytes, range_end: bytes = b"", **options: Any) -> Any:
        async with self._etcd.errors("Range"):
            return await self._etcd.kv.Range(
                rpc.RangeRequest(key=key, range_end=range_end, **options), timeout=self._etcd.timeout
            )

    async def _txn(self, compares: Sequence[Any], success: Sequence[Any]) -> Any:
        async with self._etcd.errors("Txn"):
            return await self._etcd.kv.Txn(
                rpc.TxnRequest(compare=list(compares), success=list(success)), timeout=self._etcd.timeout
            )

    async def _read(self, key: str) -> tuple[ScheduledItem | None, int]:
        """The item of ``key`` and its ``mod_revision`` (None, 0 when there is none)."""
        found = await self._range(self._item_key(key))
        if not found.kvs:
            return None, 0
        return decode(key, bytes(found.kvs[0].value)), int(found.kvs[0].mod_revision)

    def _unchanged(self, key: str, revision: int) -> Any:
        """The compare: the item of ``key`` is still the one read at ``revision`` (0: still absent)."""
        if revision == 0:
            return rpc.Compare(
                key=self._item_key(key), result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0
            )
        return rpc.Compare(
            key=self._item_key(key), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=revision
        )

    def _removal(self, item: ScheduledItem) -> list[Any]:
        """The operations removing ``item``'s index entry and claim (not the item itself)."""
        return [
            rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._index_key(item.key, item.due_at))),
            rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._claim_key(item.key))),
        ]

    def _replacing(self, old: ScheduledItem | None, new: ScheduledItem) -> list[Any]:
        """The operations replacing ``old`` (None: no item) by ``new``: etcd refuses a transaction that
        deletes a key it also writes, so an index entry that stays is only written."""
        removal = self._removal(old if old is not None else new)
        if old is None or self._index_key(old.key, old.due_at) == self._index_key(new.key, new.due_at):
            removal = removal[1:]
        return [*removal, *self._writing(new)]

    def _writing(self, item: ScheduledItem) -> list[Any]:
        """The operations writing ``item`` and its index entry."""
        return [
            rpc.RequestOp(request_put=rpc.PutRequest(key=self._item_key(item.key), value=encode(item))),
            rpc.RequestOp(request_put=rpc.PutRequest(key=self._index_key(item.key, item.due_at), value=b"")),
        ]

    async def put(self, item: ScheduledItem) -> None:
        for _ in range(_ATTEMPTS):
            current, revision = await self._read(item.key)
            if (await self._txn([self._unchanged(item.key, revision)], self._replacing(current, item))).succeeded:
                return
        raise self._contended(item.key)

    async def create(self, item: ScheduledItem) -> bool:
        result = await self._txn([self._unchanged(item.key, 0)], self._writing(item))
        return bool(result.succeeded)

    async def get(self, key: str) -> ScheduledItem | None:
        return (await self._read(key))[0]

    async def list_prefix(self, prefix: str) -> list[ScheduledItem]:
        start = self._item_key(prefix)
        found = await self._range(start, prefix_end(start))
        skip = len(self._item_key(""))
        return [decode(bytes(kv.key)[skip:].decode(), bytes(kv.value)) for kv in found.kvs]

    async def claim(self, partition: str, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        claims = self._claim_key(partition)
        held = await self._range(claims, prefix_end(claims), keys_only=True)
        skip = len(self._claim_key(""))
        leased = {bytes(kv.key)[skip:].decode() for kv in held.kvs}
        due_prefix = self._due_prefix(partition)
        due = await self._range(
            due_prefix.encode(), f"{due_prefix}{due_text(now)}0".encode(), keys_only=True, limit=limit + len(leased)
        )
        candidates: list[tuple[str, Any]] = []
        for kv in due.kvs:
            key = bytes(kv.key).decode()[len(due_prefix) :].split("/", 1)[1]
            if key not in leased:
                candidates.append((key, kv))
        candidates = candidates[:limit]
        if not candidates:
            return []
        lease = await self._etcd.grant(max(1, math.ceil(lease_seconds)))
        batches = [candidates[i : i + _CLAIM_BATCH] for i in range(0, len(candidates), _CLAIM_BATCH)]
        claimed = [
            item for found in await asyncio.gather(*(self._claim_batch(b, lease) for b in batches)) for item in found
        ]
        if not claimed:
            await self._etcd.revoke(lease)
        return sorted(claimed, key=lambda item: item.due_at)

    async def _claim_batch(self, candidates: list[tuple[str, Any]], lease: int) -> list[ScheduledItem]:
        """Claim ``candidates`` in one transaction; when one of them was taken, each in its own."""
        result = await self._claim_txn(candidates, lease)
        if result is not None:
            return result
        if len(candidates) == 1:
            return []
        each = await asyncio.gather(*(self._claim_txn([candidate], lease) for candidate in candidates))
        return [item for found in each if found for item in found]

    async def _claim_txn(self, candidates: list[tuple[str, Any]], lease: int) -> list[ScheduledItem] | None:
        compares: list[Any] = []
        success: list[Any] = []
        for key, index in candidates:
            claim = self._claim_key(key)
            compares.append(
                rpc.Compare(key=claim, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)
            )
            compares.append(
                rpc.Compare(
                    key=index.key, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=index.mod_revision
                )
            )
            success.append(rpc.RequestOp(request_put=rpc.PutRequest(key=claim, value=b"", lease=lease)))
            success.append(rpc.RequestOp(request_range=rpc.RangeRequest(key=self._item_key(key))))
        result = await self._txn(compares, success)
        if not result.succeeded:
            return None
        items = []
        for (key, _), response in zip(candidates, result.responses[1::2], strict=True):
            kvs = response.response_range.kvs
            if kvs:
                items.append(decode(key, bytes(kvs[0].value)))
        return items

    async def ack(self, item: ScheduledItem) -> None:
        for _ in range(_ATTEMPTS):
            current, revision = await self._read(item.key)
            if current != item:
                return
            delete = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._item_key(item.key)))
            if (await self._txn([self._unchanged(item.key, revision)], [delete, *self._removal(item)])).succeeded:
                return
        raise self._contended(item.key)

    async def ack_many(self, items: Sequence[ScheduledItem]) -> None:
        """Two transactions per :data:`_ACK_BATCH` items (read them all, then delete those still as
        claimed, each compared with the revision read); one changed in between: each on its own."""
        for start in range(0, len(items), _ACK_BATCH):
            await self._ack_batch(items[start : start + _ACK_BATCH])

    async def _ack_batch(self, items: Sequence[ScheduledItem]) -> None:
        reads = [rpc.RequestOp(request_range=rpc.RangeRequest(key=self._item_key(item.key))) for item in items]
        found = await self._txn([], reads)
        compares: list[Any] = []
        deletes: list[Any] = []
        for item, response in zip(items, found.responses, strict=True):
            kvs = response.response_range.kvs
            if not kvs or decode(item.key, bytes(kvs[0].value)) != item:
                continue  # removed or replaced since it was claimed: it stays as it is
            compares.append(self._unchanged(item.key, int(kvs[0].mod_revision)))
            deletes.append(rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._item_key(item.key))))
            deletes.extend(self._removal(item))
        if deletes and not (await self._txn(compares, deletes)).succeeded:
            await asyncio.gather(*(self.ack(item) for item in items))

    async def reschedule(self, claimed: ScheduledItem, following: ScheduledItem) -> bool:
        assert following.key == claimed.key, "an item is rescheduled under its own key"
        for _ in range(_ATTEMPTS):
            current, revision = await self._read(claimed.key)
            if current != claimed:
                return False
            if (
                await self._txn([self._unchanged(claimed.key, revision)], self._replacing(claimed, following))
            ).succeeded:
                return True
        raise self._contended(claimed.key)

    async def delete(self, key: str) -> bool:
        for _ in range(_ATTEMPTS):
            current, revision = await self._read(key)
            if current is None:
                return False
            delete = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._item_key(key)))
            if (await self._txn([self._unchanged(key, revision)], [delete, *self._removal(current)])).succeeded:
                return True
        raise self._contended(key)

    def _contended(self, key: str) -> BackendError:
        return BackendError(self.name, f"item {key!r} kept changing during {_ATTEMPTS} writes")
