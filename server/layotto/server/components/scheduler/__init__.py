"""The Scheduler building block: durable items that come due at a time (delayed messages, jobs).

A store keeps items by key, each with its due time (seconds since the epoch) and an opaque
payload the runtime wrote. Runtimes poll :meth:`Scheduler.claim`: a claim takes the due
items no other runtime holds and leases them for ``lease_seconds``; the runtime fires each
and then :meth:`Scheduler.ack` removes it. An item whose runtime crashed before the ack is
claimed again once its lease ends, so every item fires at least once across crashes, and
exactly once while runtimes are healthy (a store's claim is atomic). Writing an item with an
existing key replaces it (and drops any lease on it).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

from layotto.server.components.base import Component


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
    async def claim(self, now: float, lease_seconds: float, limit: int) -> list[ScheduledItem]:
        """Lease up to ``limit`` items due at ``now`` (epoch seconds) that no live lease holds,
        earliest first, for ``lease_seconds``; return them. Raises BackendError."""

    @abstractmethod
    async def ack(self, item: ScheduledItem) -> None:
        """Remove a fired item, unless it was replaced since it was claimed (its due time or payload
        changed). Raises BackendError."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the item of ``key``; whether there was one. Raises BackendError."""
