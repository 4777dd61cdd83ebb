"""In-memory pub/sub: topics and consumer groups inside the runtime (messages published
before a group subscribes are not kept for it; nothing survives a restart). One message at a
time per subscription (ordered) unless ``concurrency`` allows more in flight (a bulk
subscription's batches fill only as far as messages are in flight at once)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, MetadataField
from layotto.server.components.pubsub import BrokerMessage, Deliver, PubSub, Subscription

log = logging.getLogger(__name__)


class InMemoryPubSub(PubSub):
    spec = ComponentSpec(
        type="in-memory",
        building_block="pubsub",
        description="Topics inside the runtime: ordered per topic and consumer group, lost on restart.",
        features=frozenset({Feature.ORDERED}),
        metadata=(
            MetadataField(
                "redeliverDelayInSeconds",
                "Pause before a failed message is offered again.",
                type=float,
                default=0.05,
                minimum=0,
                maximum=60,
            ),
            MetadataField(
                "concurrency",
                "Messages in flight per subscription (above 1, delivery is no longer ordered).",
                type=int,
                default=1,
                minimum=1,
                maximum=10000,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._groups: dict[str, dict[str, asyncio.Queue[BrokerMessage]]] = {}
        self._ids = itertools.count(1)
        self._delay = 0.05
        self._concurrency = 1

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._delay = float(metadata["redeliverDelayInSeconds"])
        self._concurrency = int(metadata["concurrency"])

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        message = BrokerMessage(topic, data, dict(metadata), str(next(self._ids)))
        for queue in self._groups.get(topic, {}).values():
            queue.put_nowait(message)

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        queue = self._groups.setdefault(topic, {}).setdefault(group, asyncio.Queue())
        return Subscription([asyncio.create_task(self._consume(queue, deliver))])

    async def _consume(self, queue: asyncio.Queue[BrokerMessage], deliver: Deliver) -> None:
        slots = asyncio.Semaphore(self._concurrency)
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()

        try:
            while True:
                await slots.acquire()
                try:
                    message = await queue.get()
                except BaseException:
                    slots.release()
                    raise
                task = asyncio.create_task(self._handle(queue, message, deliver))
                running.add(task)
                task.add_done_callback(finished)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _handle(self, queue: asyncio.Queue[BrokerMessage], message: BrokerMessage, deliver: Deliver) -> None:
        while True:
            try:
                await deliver(message)
                return
            except asyncio.CancelledError:
                queue.put_nowait(message)  # not acked: another member of the group gets it
                raise
            except Exception:
                log.debug("redelivering message %s on %s", message.broker_id, message.topic, exc_info=True)
                await asyncio.sleep(self._delay)
