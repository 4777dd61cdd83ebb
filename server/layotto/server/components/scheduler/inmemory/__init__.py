"""In-memory scheduler: items in the runtime's memory (a restart loses them)."""

from __future__ import annotations

import heapq

from layotto.server.components.base import ComponentSpec
from layotto.server.components.scheduler import ScheduledItem, Scheduler, partition_of


class InMemoryScheduler(Scheduler):
    spec = ComponentSpec(
        type="in-memory",
        building_block="scheduler",
        description="Items in the runtime's memory: for tests and single-process use; a restart loses them.",
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._items: dict[str, ScheduledItem] = {}
        self._leased_until: dict[str, float] = {}

    async def put(self, item: ScheduledItem) -> None:
        self._items[item.key] = item
        self._leased_until.pop(item.key, None)

    async def create(self, item: ScheduledItem) -> bool:
        if item.key in self._items:
            return False
        self._items[item.key] = item
        return True

    async def get(self, key: str) -> ScheduledItem | None:
        return self._items.get(key)

    async def list_prefix(self, prefix: str) -> list[ScheduledItem]:
        return [item for key, item in self._items.items() if key.startswith(prefix)]

    async def claim(self, partition: str, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        due = (
            i
            for i in self._items.values()
            if i.due_at <= now and self._leased_until.get(i.key, 0.0) <= now and partition_of(i.key) == partition
        )
        claimed = heapq.nsmallest(limit, due, key=lambda i: i.due_at)
        for item in claimed:
            self._leased_until[item.key] = now + lease_seconds
        return claimed

    async def ack(self, item: ScheduledItem) -> None:
        if self._items.get(item.key) == item:
            del self._items[item.key]
            self._leased_until.pop(item.key, None)

    async def reschedule(self, claimed: ScheduledItem, following: ScheduledItem) -> bool:
        if self._items.get(claimed.key) != claimed:
            return False
        self._items[claimed.key] = following
        self._leased_until.pop(claimed.key, None)
        return True

    async def delete(self, key: str) -> bool:
        self._leased_until.pop(key, None)
        return self._items.pop(key, None) is not None
