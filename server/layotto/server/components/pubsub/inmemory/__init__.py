"""In-memory pub/sub: topics and consumer groups inside the runtime (messages published
before a group subscribes are not kept for it; nothing survives a restart)."""

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
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._groups: dict[str, dict[str, asyncio.Queue[BrokerMessage]]] = {}
        self._ids = itertools.count(1)
        self._delay = 0.05

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._delay = float(metadata["redeliverDelayInSeconds"])

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        message = BrokerMessage(topic, data, dict(metadata), str(next(self._ids)))
        for queue in self._groups.get(topic, {}).values():
            queue.put_nowait(message)

    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        queue = self._groups.setdefault(topic, {}).setdefault(group, asyncio.Queue())
        return Subscription([asyncio.create_task(self._consume(queue, deliver))])

    async def _consume(self, queue: asyncio.Queue[BrokerMessage], deliver: Deliver) -> None:
        while True:
            message = await queue.get()
            while True:
                try:
                    await deliver(message)
                    break
                except asyncio.CancelledError:
                    queue.put_nowait(message)  # not acked: another member of the group gets it
                    raise
                except Exception:
                    log.debug("redelivering message %s on %s", message.broker_id, message.topic, exc_info=True)
                    await asyncio.sleep(self._delay)
