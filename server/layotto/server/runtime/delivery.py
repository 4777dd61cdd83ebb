"""Delivering broker messages to subscribers, the same way on every broker.

A subscriber is a streaming subscription (SubscribeTopicEvents) or the app's
AppCallback. The runtime holds one broker subscription per (pubsub, topic) in the
app's consumer group and hands each message to one live subscriber of it, in turn.
SUCCESS and DROP acknowledge the message to the broker (a dropped one goes to the
subscription's dead-letter topic if it has one, as Dapr does since 1.13); RETRY, an error or a
subscriber that goes away offers it again with exponential backoff, up to the
subscriber's ``max_attempts``, after which it goes to the subscription's dead-letter
topic if it has one, else it is dropped and logged. A dead-lettered message carries
:data:`DEAD_LETTERED_FROM` (``pubsub/topic`` it failed on) and is never dead-lettered
again: failing on the dead-letter topic too, it is dropped and logged, so a dead-letter
topic that is the topic itself or leads back to it (a -> b, b -> a) cannot loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from layotto.server.components.pubsub import BrokerMessage, Deliver, PubSub, Subscription
from layotto.server.errors import InvalidArgument
from layotto.server.runtime import cloudevents
from layotto.tracing import delivery_span

log = logging.getLogger(__name__)

SUCCESS, RETRY, DROP = 0, 1, 2
#: the outcome of one delivery attempt, as an observer is told it (Dapr's process_status, and dead_letter)
OUTCOMES = {SUCCESS: "success", RETRY: "retry", DROP: "drop"}
DEAD_LETTER = "dead_letter"


class DeliveryObserver(Protocol):
    """Told the outcome of every delivery attempt (the runtime's metrics)."""

    def delivery_outcome(self, pubsub: str, topic: str, outcome: str) -> None:
        """``outcome``: success, retry or drop (the subscriber's answer), or dead_letter (given up)."""


RAW_PAYLOAD = "rawPayload"
#: the metadata entry a dead-lettered message carries: the ``pubsub/topic`` it failed on
DEAD_LETTERED_FROM = "layotto-dead-lettered-from"
DEFAULT_MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class Delivery:
    """One message as subscribers see it, before conversion to a wire message."""

    event: cloudevents.Event
    topic: str
    pubsub: str
    metadata: Mapping[str, str]


class Subscriber(abc.ABC):
    """Something that takes deliveries of a topic and answers SUCCESS, RETRY or DROP."""

    def __init__(self, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS, dead_letter_topic: str = "") -> None:
        self.max_attempts = max_attempts
        self.dead_letter_topic = dead_letter_topic
        self.closed = False

    @abc.abstractmethod
    async def offer(self, delivery: Delivery) -> int:
        """The subscriber's answer; raising counts as RETRY."""


class _Topic:
    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []
        self.subscription: Subscription | None = None
        self.turn = itertools.count()
        self.lock = asyncio.Lock()


_Key = tuple[str, str, str]  # pubsub, topic, consumer group


class Topics:
    """Every subscribed (pubsub, topic, consumer group) of the runtime and the one broker
    subscription feeding it; subscribers of one key compete, different groups each get all."""

    def __init__(self) -> None:
        self._topics: dict[_Key, _Topic] = {}
        self.observer: DeliveryObserver | None = None

    async def attach(self, pubsub: PubSub, topic_name: str, group: str, subscriber: Subscriber) -> None:
        key = (pubsub.name, topic_name, group)
        while True:
            topic = self._topics.setdefault(key, _Topic())
            async with topic.lock:
                if self._topics.get(key) is not topic:
                    continue  # its last subscriber left while this one waited: start afresh
                topic.subscribers.append(subscriber)
                if topic.subscription is None:
                    try:
                        topic.subscription = await pubsub.subscribe(topic_name, group, self._deliverer(key, pubsub))
                    except BaseException:
                        topic.subscribers.remove(subscriber)
                        raise
                return

    async def detach(self, pubsub_name: str, topic_name: str, group: str, subscriber: Subscriber) -> None:
        subscriber.closed = True
        key = (pubsub_name, topic_name, group)
        topic = self._topics.get(key)
        if topic is None:
            return
        async with topic.lock:
            if subscriber in topic.subscribers:
                topic.subscribers.remove(subscriber)
            if topic.subscribers:
                return
            if self._topics.get(key) is topic:
                del self._topics[key]  # forgotten, so topics that come and go do not pile up
            if topic.subscription is not None:
                subscription, topic.subscription = topic.subscription, None
                with contextlib.suppress(Exception):
                    await subscription.aclose()

    def __len__(self) -> int:
        return len(self._topics)

    def _pick(self, key: _Key) -> Subscriber | None:
        topic = self._topics.get(key)
        if topic is None:
            return None
        live = [s for s in topic.subscribers if not s.closed]
        return live[next(topic.turn) % len(live)] if live else None

    def _deliverer(self, key: _Key, pubsub: PubSub) -> Deliver:
        async def deliver(message: BrokerMessage) -> None:
            raw = message.metadata.get(RAW_PAYLOAD, "").lower() == "true"
            event = cloudevents.unwrap(message.data, raw=raw)
            if event.expired():
                log.info("dropping expired message %s on %s/%s", event.id, key[0], key[1])
                return
            delivery = Delivery(event, message.topic or key[1], key[0], message.metadata)  # a wildcard's match
            with delivery_span(pubsub.spec.type, key[1], str(event.extensions.get("traceparent", ""))):
                await self._deliver(pubsub, key, message, delivery)

        return deliver

    async def _deliver(self, pubsub: PubSub, key: _Key, message: BrokerMessage, delivery: Delivery) -> None:
        delay = FIRST_BACKOFF_SECONDS
        for attempt in itertools.count(1):
            subscriber = self._pick(key)
            if subscriber is None:
                raise RuntimeError("no subscriber: the broker keeps the message")
            status = await _answer(subscriber, delivery)
            if self.observer is not None:
                self.observer.delivery_outcome(key[0], key[1], OUTCOMES[status])
            if status == SUCCESS:
                return
            if status == DROP and not subscriber.dead_letter_topic:
                log.warning("subscriber dropped message %s on %s/%s", delivery.event.id, key[0], key[1])
                return
            if status == DROP or attempt >= subscriber.max_attempts:
                await _give_up(pubsub, subscriber, message, delivery, dropped=status == DROP)
                if self.observer is not None and subscriber.dead_letter_topic:
                    self.observer.delivery_outcome(key[0], key[1], DEAD_LETTER)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


async def _answer(subscriber: Subscriber, delivery: Delivery) -> int:
    try:
        status = await subscriber.offer(delivery)
    except Exception as error:  # an unreachable or failing subscriber: offered again later
        log.warning("delivering %s on %s failed: %s", delivery.event.id, delivery.topic, error)
        return RETRY
    return status if status in (SUCCESS, RETRY, DROP) else RETRY


async def _give_up(
    pubsub: PubSub, subscriber: Subscriber, message: BrokerMessage, delivery: Delivery, *, dropped: bool = False
) -> None:
    where = f"{delivery.pubsub}/{delivery.topic}"
    earlier = message.metadata.get(DEAD_LETTERED_FROM)
    after = "the subscriber dropped it" if dropped else f"{subscriber.max_attempts} attempts"
    if subscriber.dead_letter_topic and earlier is not None:
        log.error(
            "message %s on %s dropped after %s: it was dead-lettered from %s already, never twice",
            delivery.event.id,
            where,
            after,
            earlier,
        )
    elif subscriber.dead_letter_topic:
        metadata = {**message.metadata, DEAD_LETTERED_FROM: where}
        await pubsub.publish(subscriber.dead_letter_topic, message.data, metadata)
        topic = subscriber.dead_letter_topic
        log.warning("message %s on %s went to dead-letter topic %s after %s", delivery.event.id, where, topic, after)
    else:
        log.error(
            "message %s on %s dropped after %d attempts (no dead-letter topic)",
            delivery.event.id,
            where,
            subscriber.max_attempts,
        )


def require_dead_letter_topic(topic: str, dead_letter_topic: str, field: str) -> str:
    """``dead_letter_topic`` unless it is the subscribed ``topic`` itself (a message failing on it
    would come back to the same subscriber forever): InvalidArgument naming ``field``."""
    if dead_letter_topic and dead_letter_topic == topic:
        raise InvalidArgument(
            field, f"is the subscribed topic {topic!r} itself: a message that fails there would loop; name another"
        )
    return dead_letter_topic
