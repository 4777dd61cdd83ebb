"""In-memory scheduler: items in the runtime's memory (a restart loses them)."""

from __future__ import annotations

import heapq

from layotto.server.components.base import ComponentSpec
from layotto.server.components.scheduler import ScheduledItem, Scheduler


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

    async def claim(self, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        due = (i for i in self._items.values() if i.due_at <= now and self._leased_until.get(i.key, 0.0) <= now)
        claimed = heapq.nsmallest(limit, due, key=lambda i: i.due_at)
        for item in claimed:
            self._leased_until[item.key] = now + lease_seconds
        return claimed

    async def ack(self, item: ScheduledItem) -> None:
        if self._items.get(item.key) == item:
            del self._items[item.key]
            self._leased_until.pop(item.key, None)

    async def delete(self, key: str) -> bool:
        self._leased_until.pop(key, None)
        return self._items.pop(key, None) is not None
