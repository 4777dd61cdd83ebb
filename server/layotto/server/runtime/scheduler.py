"""Scheduling: delayed messages kept in a scheduler store, and the loop that fires them and jobs.

Every runtime runs one :class:`SchedulerLoop` per scheduler component: it claims the due
items of the partitions it fires (delayed messages, its own app's jobs), each leased to this
runtime for ``LEASE_SECONDS``, fires them (a claimed batch at once), and acknowledges the
batch's fired items in one store call, or replaces an item by its next occurrence (a recurring
job, a job's retry). A delayed message whose publish fails stays leased and is fired again when
the lease ends; an item whose runtime crashed is fired by any runtime once the lease ends.
Firing accuracy: an item fires within ``POLL_SECONDS`` (0.25 s) of its due time plus the time to
deliver it, while a runtime is running; while items keep coming due the loop claims every
``BUSY_POLL_SECONDS`` (0.02 s), or at once after a full batch; an item stored through this
runtime wakes it at its due time (:class:`DueSoon`), claims staying ``BUSY_POLL_SECONDS``
apart. Items due while no runtime runs fire when one starts.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from layotto.server.aio import stop_task
from layotto.server.components.loader import ComponentSet
from layotto.server.components.scheduler import ScheduledItem, Scheduler
from layotto.server.errors import InvalidArgument, LayottoError, NoComponentsConfigured
from layotto.server.runtime.publish import Publisher, find_pubsub
from layotto.server.runtime.validation import require_range

if TYPE_CHECKING:
    from layotto.server.runtime.jobs import JobService

log = logging.getLogger(__name__)

#: the pause between claims while nothing came due at the last one
POLL_SECONDS = 0.25
#: the pause after a claim that found due items (fewer than a batch): items keep coming due
BUSY_POLL_SECONDS = 0.02
LEASE_SECONDS = 30.0
#: while a claimed batch fires, its items that are over are acknowledged at least this often
ACK_EVERY_SECONDS = 1.0
CLAIM_LIMIT = 100
#: the longest delay a delayed message may ask for (Layotto's int32 field allows more): 366 days
MAX_DELAY_SECONDS = 366 * 24 * 3600
#: the partition of the delayed messages stored before they were partitioned by pub/sub (still fired)
DELAY_PREFIX = "delay||"


def delay_partition(pubsub_name: str) -> str:
    """The partition of the delayed messages for pub/sub ``pubsub_name``: only runtimes that have that
    pub/sub claim them (a runtime of another app sharing the store leaves them alone)."""
    return f"delay@{pubsub_name}||"


class DueSoon:
    """Due times of the items stored through this runtime, so its loops wake when one comes due
    instead of waiting out their poll (a hint only: items stored by other runtimes are found by
    the poll). Keeps the :data:`MAX_TIMES` earliest."""

    MAX_TIMES = 1024
    #: times older than this (seconds) are dropped: every loop has claimed since
    STALE_SECONDS = 2.0

    def __init__(self) -> None:
        self._times: list[float] = []
        self._added = asyncio.Event()

    def add(self, due_at: float) -> None:
        """An item due at ``due_at`` (epoch seconds) was stored."""
        if len(self._times) >= self.MAX_TIMES and due_at >= self._times[-1]:
            return
        bisect.insort(self._times, due_at)
        del self._times[self.MAX_TIMES :]
        self._added.set()

    async def pause(self, seconds: float, claimed_at: float, gap: float) -> None:
        """Wait ``seconds``, or until the first due time after ``claimed_at`` (the last claim's
        ``now``: earlier ones were due at that claim) but at least ``gap`` seconds after it (so
        items due every millisecond are claimed in batches, not one by one)."""
        deadline = time.time() + seconds
        while True:
            now = time.time()
            del self._times[: bisect.bisect_left(self._times, now - self.STALE_SECONDS)]
            following = bisect.bisect_right(self._times, claimed_at)
            wake = min(deadline, self._times[following]) if following < len(self._times) else deadline
            wake = max(wake, min(deadline, claimed_at + gap))
            if wake <= now:
                return
            self._added.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._added.wait(), wake - now)


def find_scheduler(components: ComponentSet) -> Scheduler:
    """The runtime's scheduler store: the first configured (by name). Raises NoComponentsConfigured."""
    names = components.names("scheduler")
    if not names:
        raise NoComponentsConfigured("scheduler")
    store = components.find("scheduler", names[0], "scheduler")
    assert isinstance(store, Scheduler)
    return store


class DelayQueueService:
    """Layotto's delayed messages: published to a pub/sub topic when due."""

    def __init__(self, components: ComponentSet, publisher: Publisher) -> None:
        self._components = components
        self._publisher = publisher
        #: the due times of the messages delayed through this runtime, for the loop
        self.due_soon = DueSoon()

    async def publish_delayed(
        self,
        pubsub_name: str,
        topic: str,
        data: bytes,
        *,
        content_type: str,
        delay_seconds: int,
        metadata: Mapping[str, str],
    ) -> str:
        """Schedule ``data`` for ``topic`` of pub/sub ``pubsub_name`` in ``delay_seconds``; the message id.

        Raises InvalidArgument naming ``component_name``, ``topic`` or ``delay_in_seconds``,
        PayloadTooLarge (``data``), NoComponentsConfigured (no scheduler), and the store's errors.
        """
        find_pubsub(self._components, pubsub_name, "component_name")
        if not topic:
            raise InvalidArgument("topic", "is empty")
        require_range(delay_seconds, "delay_in_seconds", 0, MAX_DELAY_SECONDS, "seconds")
        self._publisher.check_size(data, "data")
        store = find_scheduler(self._components)
        message_id = str(uuid.uuid4())
        payload = {
            "pubsub": pubsub_name,
            "topic": topic,
            "data": base64.b64encode(data).decode(),
            "contentType": content_type,
            "metadata": dict(metadata),
        }
        item = ScheduledItem(
            delay_partition(pubsub_name) + message_id, time.time() + delay_seconds, json.dumps(payload).encode()
        )
        await store.put(item)
        self.due_soon.add(item.due_at)
        return message_id

    async def fire(self, item: ScheduledItem) -> None:
        """Publish a due delayed message. Raises the publish's errors."""
        body = json.loads(item.payload)
        await self._publisher.publish(
            body["pubsub"], body["topic"], base64.b64decode(body["data"]), body["contentType"], body["metadata"]
        )


class SchedulerLoop:
    """Claims and fires the due items of every scheduler component, until :meth:`aclose`.

    Only the first scheduler (by name) holds jobs; every one is polled for delayed messages.
    """

    def __init__(self, components: ComponentSet, delay_queue: DelayQueueService, jobs: JobService) -> None:
        self._components = components
        self._delay_queue = delay_queue
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Two tasks per store: its delayed messages (the partitions of the runtime's pub/subs, read
        each round, so a pub/sub added by a reload is served) and its app's jobs, so jobs waiting
        for an app that is down never hold up delayed messages."""
        for name in self._components.names("scheduler"):
            store = self._components.find("scheduler", name, "scheduler")
            assert isinstance(store, Scheduler)
            delays = self._run(store, self._delay_partitions, self._delay_queue.due_soon)
            self._tasks.append(asyncio.create_task(delays, name=f"scheduler-{name}"))
            jobs = self._run(store, lambda: [self._jobs.partition], self._jobs.due_soon)
            self._tasks.append(asyncio.create_task(jobs, name=f"scheduler-{name}-jobs"))

    def _delay_partitions(self) -> list[str]:
        return [DELAY_PREFIX, *(delay_partition(name) for name in self._components.names("pubsub"))]

    async def _run(self, store: Scheduler, partitions: Callable[[], list[str]], due_soon: DueSoon) -> None:
        while True:
            claimed, claimed_at = 0, time.time()
            for partition in partitions():
                try:
                    due = await store.claim(partition, claimed_at, LEASE_SECONDS, CLAIM_LIMIT)
                except LayottoError as error:
                    log.warning("scheduler %r: claiming due items failed: %s", store.name, error.message)
                    due = []
                if due:
                    await self._fire_batch(store, due)
                claimed = max(claimed, len(due))
            if claimed < CLAIM_LIMIT:  # a full batch: more may be due already
                await due_soon.pause(BUSY_POLL_SECONDS if claimed else POLL_SECONDS, claimed_at, BUSY_POLL_SECONDS)

    async def _fire_batch(self, store: Scheduler, due: list[ScheduledItem]) -> None:
        """Fire a claimed batch at once; acknowledge the items that are over in one store call when
        the batch is done, or every ``ACK_EVERY_SECONDS`` while a slow one is still firing (so the
        others' leases never run out waiting for it)."""
        firing = {asyncio.ensure_future(self._fire(store, item)): item for item in due}
        try:
            while firing:
                fired, _ = await asyncio.wait(firing, timeout=ACK_EVERY_SECONDS)
                over = [firing[task] for task in fired if task.result()]
                for task in fired:
                    del firing[task]
                if over:
                    await self._ack(store, over)
        finally:
            for task in firing:  # cancelled (the loop stops): each stays leased and fires again later
                task.cancel()
            if firing:
                await asyncio.wait(firing)

    async def _ack(self, store: Scheduler, over: list[ScheduledItem]) -> None:
        try:
            await store.ack_many(over)
        except LayottoError as error:  # left leased: fired again when the lease ends
            log.warning(
                "scheduler %r: acknowledging %d fired items failed (fired again in %.0fs): %s",
                store.name,
                len(over),
                LEASE_SECONDS,
                error.message,
            )

    async def _fire(self, store: Scheduler, item: ScheduledItem) -> bool:
        """Fire one item; whether it is over (to be acknowledged). A recurring job's next occurrence
        and a retry replace it here; an item that failed stays leased."""
        try:
            if item.key.startswith("delay"):  # delay|| or delay@<pub/sub>||
                await self._delay_queue.fire(item)
                following = None
            else:
                following = await self._jobs.fire(item)
            if following is None:
                return True
            if await store.reschedule(item, following):
                self._jobs.due_soon.add(following.due_at)
        except LayottoError as error:  # left leased: fired again when the lease ends
            log.warning(
                "scheduler %r: firing %r failed (retried in %.0fs): %s",
                store.name,
                item.key,
                LEASE_SECONDS,
                error.message,
            )
        except (ValueError, KeyError, TypeError) as error:
            log.error("scheduler %r: item %r is malformed (%s); dropped", store.name, item.key, error)
            with contextlib.suppress(LayottoError):
                await store.delete(item.key)
        except Exception:  # never the loop's end: the item stays leased and fires again after the lease
            log.exception("scheduler %r: firing %r failed unexpectedly", store.name, item.key)
        return False

    async def aclose(self) -> None:
        # stop_task cancels again until the task ends: redis-py can lose one cancellation, and the
        # loop, which carries on after a failed claim, would then never end (a runtime hung on SIGTERM)
        for task in self._tasks:
            await stop_task(task)
        self._tasks.clear()
