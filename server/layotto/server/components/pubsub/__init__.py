"""The Pub/Sub building block: the interface every broker component implements.

Delivery is at least once. A component hands each message to the runtime's ``deliver``
callback and acknowledges it to the broker only when the callback returns; when the
callback raises, or the runtime dies first, the broker delivers the message again.
Retries with backoff, dead-letter topics and dropping are the runtime's business (see
the Pub/Sub API), so they behave the same on every broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field

from layotto.server.aio import stop_task
from layotto.server.components.base import Component, Health

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerMessage:
    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    broker_id: str = ""  # the broker's own id, for logs


Deliver = Callable[[BrokerMessage], Awaitable[None]]


class Subscription:
    """A running subscription: the tasks consuming it. ``aclose()`` stops them (un-acked
    messages stay with the broker), then runs ``on_close`` if given."""

    def __init__(self, tasks: list[asyncio.Task[None]], on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self._tasks = tasks
        self._on_close = on_close

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await stop_task(task)
        if self._on_close is not None:
            with contextlib.suppress(Exception):
                await self._on_close()


#: how long closing a subscription lets running handlers finish (an ack already decided is
#: still being sent to the broker) before cancelling them, in seconds
FINISH_SECONDS = 0.5


class InFlight:
    """At most ``limit`` message handlers running at once for one subscription."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._running: set[asyncio.Task[None]] = set()

    async def start(self, handler: Coroutine[None, None, None]) -> None:
        """Wait for a free slot, then run ``handler`` in the background."""
        await self._slots.acquire()
        task = asyncio.create_task(handler)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def cancel(self, *, finish: float = FINISH_SECONDS) -> None:
        """Stop the handlers: those that end within ``finish`` seconds (a subscriber's answer
        being acknowledged to the broker) end on their own, the others are cancelled."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=finish)
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(Exception):
                await stop_task(task)


class PubSub(Component):
    """A broker. Its consumer loops never stop on a failure: they log it, report it through
    :meth:`fault` (the component is unhealthy while any fault lasts), repair what the runtime
    created on the broker, resume where delivery stopped and report :meth:`repaired`."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._faults: dict[str, str] = {}  # what failed (a subscription) -> why, while it is repaired

    def fault(self, where: str, error: BaseException | str) -> None:
        """Record that ``where`` failed and is being repaired (logged once per fault)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}".rstrip(": ")
        if where not in self._faults:
            log.warning("pubsub %r: %s failed (%s); repairing it", self.name, where, text)
        self._faults[where] = text

    def repaired(self, where: str) -> None:
        """``where`` works again."""
        if self._faults.pop(where, None) is not None:
            log.warning("pubsub %r: %s repaired; delivery resumed", self.name, where)

    async def health(self) -> Health:
        """Down while the connection is down or any subscription is being repaired."""
        health = await self.connection_health()
        if not self._faults:
            return health
        details = {**health.details, **{f"subscription {where}": why for where, why in self._faults.items()}}
        return Health(up=False, details=details)

    async def connection_health(self) -> Health:
        """The health of the broker connection (default: the connected backend's)."""
        return await super().health()

    @abstractmethod
    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None: ...

    @abstractmethod
    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        """Consume ``topic`` as a member of consumer ``group``: members of one group share its
        messages (each message goes to one member); every group gets every message."""
