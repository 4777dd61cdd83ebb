"""The Scheduler building block: durable items that come due at a time (delayed messages, jobs).

A store keeps items by key, each with its due time (seconds since the epoch) and an opaque
payload the runtime wrote. An item's **partition** is its key up to and including the first
``||`` (``delay@<pub/sub>||``, ``job@<app id>||``): a runtime claims only the partitions it fires (its
own app's jobs, the delayed messages of the pub/subs it has). Runtimes poll :meth:`Scheduler.claim`: a claim
takes the due items of a partition that no other runtime holds and leases them for
``lease_seconds``; the runtime fires each and then :meth:`Scheduler.ack` removes it (a batch at
once: :meth:`Scheduler.ack_many`), or
:meth:`Scheduler.reschedule` replaces it by its next occurrence (a recurring job, a retry).
An item whose runtime crashed before either is claimed again once its lease ends, so every
item fires at least once across crashes, and exactly once while runtimes are healthy (a
store's claim is atomic, and ack/reschedule change an item only if it is still the one
claimed). Writing an item with an existing key replaces it (and drops any lease on it).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from layotto.server.components.base import Component

PARTITION_END = "||"


def partition_of(key: str) -> str:
    """The partition of ``key``: up to and including its first ``||`` ("" when it has none)."""
    end = key.find(PARTITION_END)
    return key[: end + len(PARTITION_END)] if end >= 0 else ""


@dataclass(frozen=True)
class ScheduledItem:
    """One item: ``key`` (unique per store), ``due_at`` (epoch seconds), ``payload`` (the runtime's bytes)."""

    key: str
    due_at: float
    payload: bytes


class Scheduler(Component):
    @abstractmethod
    async def put(self, item: ScheduledItem) -> None:
        """Store ``item``, replacing (and un-leasing) any item of its key. Raises BackendError."""

    @abstractmethod
    async def create(self, item: ScheduledItem) -> bool:
        """Store ``item`` unless an item of its key exists; whether it was stored. Raises BackendError."""

    @abstractmethod
    async def get(self, key: str) -> ScheduledItem | None:
        """The item of ``key`` (leased or not), None when there is none. Raises BackendError."""

    @abstractmethod
    async def list_prefix(self, prefix: str) -> list[ScheduledItem]:
        """Every item whose key starts with ``prefix`` (which starts with a whole partition), in no
        particular order. Raises BackendError."""

    @abstractmethod
    async def claim(self, partition: str, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        """Lease up to ``limit`` items of ``partition`` due at ``now`` (epoch seconds) that no live
        lease holds, earliest first, for ``lease_seconds``; return them. Raises BackendError."""

    @abstractmethod
    async def ack(self, item: ScheduledItem) -> None:
        """Remove a fired item, unless it was replaced since it was claimed (its due time or payload
        changed). Raises BackendError."""

    async def ack_many(self, items: Sequence[ScheduledItem]) -> None:
        """:meth:`ack` every one of ``items`` (fired items, each as claimed). Stores override this to
        acknowledge a batch in one round trip; this default acks them concurrently. Raises
        BackendError (then some may be acknowledged, the others stay leased)."""
        await asyncio.gather(*(self.ack(item) for item in items))

    @abstractmethod
    async def reschedule(self, claimed: ScheduledItem, following: ScheduledItem) -> bool:
        """Replace the claimed item by ``following`` (the same key: its next due time and payload),
        un-leased, unless it was replaced or removed since it was claimed; whether it was. Raises
        BackendError."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the item of ``key``; whether there was one. Raises BackendError."""
