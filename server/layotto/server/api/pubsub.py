"""The Pub/Sub API: PublishEvent and the streaming SubscribeTopicEvents (Layotto), and
PublishEvent and SubscribeTopicEventsAlpha1 (Dapr).

Streams subscribed to one pubsub and topic share its messages as competing consumers:
the runtime holds one broker subscription per (pubsub, topic) in the app's consumer
group and hands each message to one stream. A message is acknowledged to the broker
once a stream answers SUCCESS or DROP; RETRY (or a stream that goes away) offers it
again with backoff, up to ``maxDeliveryAttempts``, after which it goes to the
subscription's dead-letter topic if it has one (else it is dropped and logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import empty_pb2

from layotto.server.api import cloudevents
from layotto.server.api.adapter import Context
from layotto.server.api.state import parse_ttl
from layotto.server.components.loader import ComponentSet
from layotto.server.components.pubsub import BrokerMessage, PubSub, Subscription
from layotto.server.errors import InvalidArgument, PayloadTooLarge

log = logging.getLogger(__name__)

SUCCESS, RETRY, DROP = 0, 1, 2
RAW_PAYLOAD = "rawPayload"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 0.1
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class PubSubMessages:
    """The message classes of one wire API (Layotto's or Dapr's)."""

    topic_event_request: Any
    stream_response: Any
    initial_response: Any
    has_metadata: bool


@dataclass
class _Stream:
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    pending: dict[str, deque[asyncio.Future[int]]] = field(default_factory=lambda: defaultdict(deque))
    dead_letter_topic: str = ""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    closed: bool = False


class _Topic:
    """The streams of one (pubsub, topic), and the one broker subscription feeding them."""

    def __init__(self) -> None:
        self.streams: list[_Stream] = []
        self.subscription: Subscription | None = None
        self.turn = itertools.count()
        self.lock = asyncio.Lock()


def to_event_request(
    messages: PubSubMessages, event: cloudevents.Event, topic: str, pubsub: str, metadata: Mapping[str, str]
) -> Any:
    fields: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "spec_version": event.spec_version,
        "data_content_type": event.content_type,
        "data": event.data,
        "topic": topic,
        "pubsub_name": pubsub,
    }
    if messages.has_metadata:
        fields["metadata"] = dict(metadata)
    return messages.topic_event_request(**fields)


class PubSubApi:
    def __init__(
        self,
        components: ComponentSet,
        app_id: str,
        messages: PubSubMessages,
        topics: dict[tuple[str, str], _Topic] | None = None,
    ) -> None:
        self._components = components
        self._app_id = app_id
        self._messages = messages
        self._topics = topics if topics is not None else {}

    def _pubsub(self, name: str) -> PubSub:
        if not name:
            raise InvalidArgument("pubsub_name", "is empty")
        component = self._components.find("pubsub", name, "pubsub_name")
        assert isinstance(component, PubSub)
        return component

    # -- publishing ----------------------------------------------------------------------

    async def PublishEvent(self, request: Any, context: Context) -> empty_pb2.Empty:
        pubsub = self._pubsub(request.pubsub_name)
        if not request.topic:
            raise InvalidArgument("topic", "is empty")
        if len(request.data) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge("data", len(request.data), MAX_PAYLOAD_BYTES)
        metadata = dict(request.metadata)
        ttl = parse_ttl(metadata, "metadata")
        if metadata.get(RAW_PAYLOAD, "").lower() == "true":
            body = bytes(request.data)
        else:
            body = cloudevents.wrap(
                request.data,
                request.data_content_type,
                topic=request.topic,
                pubsub=request.pubsub_name,
                source=self._app_id,
                ttl_seconds=ttl,
            )
        await pubsub.publish(request.topic, body, metadata)
        return empty_pb2.Empty()

    # -- streaming subscriptions ------------------------------------------------------------

    async def _stream(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        first = await anext(requests, None)
        if first is None or first.WhichOneof("subscribe_topic_events_request_type") != "initial_request":
            raise InvalidArgument("initial_request", "must be the first message of the stream")
        initial = first.initial_request
        pubsub = self._pubsub(initial.pubsub_name)
        if not initial.topic:
            raise InvalidArgument("initial_request.topic", "is empty")
        stream = _Stream(dead_letter_topic=initial.dead_letter_topic if initial.HasField("dead_letter_topic") else "")
        raw_attempts = initial.metadata.get("maxDeliveryAttempts", str(DEFAULT_MAX_ATTEMPTS))
        if not raw_attempts.isdigit() or int(raw_attempts) < 1:
            raise InvalidArgument(
                "initial_request.metadata.maxDeliveryAttempts", f"expected a positive integer, got {raw_attempts!r}"
            )
        stream.max_attempts = int(raw_attempts)
        group = initial.metadata.get("consumerID") or self._app_id
        yield self._messages.stream_response(initial_response=self._messages.initial_response())
        key = (pubsub.name, initial.topic)
        await self._attach(key, stream, pubsub, group, dict(initial.metadata))
        reader = asyncio.create_task(self._read_acks(requests, stream))
        try:
            while True:
                getter = asyncio.ensure_future(stream.outbox.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break  # the client half-closed or went away
                yield self._messages.stream_response(event_message=getter.result())
        finally:
            reader.cancel()
            await self._detach(key, stream)

    async def SubscribeTopicEvents(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for response in self._stream(requests, context):
            yield response

    async def SubscribeTopicEventsAlpha1(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for response in self._stream(requests, context):
            yield response

    async def _read_acks(self, requests: AsyncIterator[Any], stream: _Stream) -> None:
        async for request in requests:
            if request.WhichOneof("subscribe_topic_events_request_type") != "event_processed":
                continue
            processed = request.event_processed
            waiting = stream.pending.get(processed.id)
            if waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_result(int(processed.status.status))

    async def _attach(
        self, key: tuple[str, str], stream: _Stream, pubsub: PubSub, group: str, metadata: dict[str, str]
    ) -> None:
        topic = self._topics.setdefault(key, _Topic())
        async with topic.lock:
            topic.streams.append(stream)
            if topic.subscription is None:
                topic.subscription = await pubsub.subscribe(key[1], group, self._deliverer(key, pubsub))

    async def _detach(self, key: tuple[str, str], stream: _Stream) -> None:
        stream.closed = True
        for waiting in stream.pending.values():
            for future in waiting:
                if not future.done():
                    future.set_result(RETRY)  # offered again, to another stream or later
        topic = self._topics.get(key)
        if topic is None:
            return
        async with topic.lock:
            if stream in topic.streams:
                topic.streams.remove(stream)
            if not topic.streams and topic.subscription is not None:
                subscription, topic.subscription = topic.subscription, None
                with contextlib.suppress(Exception):
                    await subscription.aclose()

    def _deliverer(self, key: tuple[str, str], pubsub: PubSub) -> Any:
        async def deliver(message: BrokerMessage) -> None:
            raw = message.metadata.get(RAW_PAYLOAD, "").lower() == "true"
            event = cloudevents.unwrap(message.data, raw=raw)
            if event.expired():
                log.info("dropping expired message %s on %s/%s", event.id, *key)
                return
            request = to_event_request(self._messages, event, key[1], key[0], message.metadata)
            delay = DEFAULT_BACKOFF_SECONDS
            attempt = 0
            while True:
                attempt += 1
                stream = self._pick(key)
                if stream is None:
                    raise RuntimeError("no subscriber: the broker keeps the message")
                status = await self._offer(stream, request)
                if status == SUCCESS:
                    return
                if status == DROP:
                    log.warning("subscriber dropped message %s on %s/%s", event.id, *key)
                    return
                if attempt >= stream.max_attempts:
                    await self._give_up(pubsub, key, stream, message, event.id)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

        return deliver

    def _pick(self, key: tuple[str, str]) -> _Stream | None:
        topic = self._topics.get(key)
        live = [s for s in topic.streams if not s.closed] if topic else []
        if not live or topic is None:
            return None
        return live[next(topic.turn) % len(live)]

    async def _offer(self, stream: _Stream, request: Any) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stream.pending[request.id].append(future)
        stream.outbox.put_nowait(request)
        try:
            return await future
        finally:
            waiting = stream.pending.get(request.id)
            if waiting is not None and not waiting:
                del stream.pending[request.id]

    async def _give_up(
        self, pubsub: PubSub, key: tuple[str, str], stream: _Stream, message: BrokerMessage, event_id: str
    ) -> None:
        if stream.dead_letter_topic:
            await pubsub.publish(stream.dead_letter_topic, message.data, message.metadata)
            log.warning("message %s on %s/%s went to dead-letter topic %s", event_id, *key, stream.dead_letter_topic)
        else:
            log.error(
                "message %s on %s/%s dropped after %d attempts (no dead-letter topic)",
                event_id,
                *key,
                stream.max_attempts,
            )
