"""The Pub/Sub API: PublishEvent and the streaming SubscribeTopicEvents (Layotto), and
PublishEvent and SubscribeTopicEventsAlpha1 (Dapr).

A stream is one subscriber of its (pubsub, topic) for the delivery engine
(:mod:`layotto.server.runtime.delivery`): streams of one topic, of either API, and the app's
AppCallback compete for its messages. Each event is sent on the stream as
``event_message`` and settled by the ``event_processed`` answer with its id. A second
``initial_request``, or a request setting neither, ends the stream with INVALID_ARGUMENT naming
the field; an answer for an id with no pending delivery is ignored (logged at DEBUG): it may
race a redelivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2

from layotto.proto.dapr.runtime.v1 import pubsub_pb2 as dapr_pubsub_pb2
from layotto.server.api.adapter import Context
from layotto.server.components.pubsub import PubSub
from layotto.server.errors import InvalidArgument, MalformedRequest
from layotto.server.runtime.delivery import (
    DEFAULT_MAX_ATTEMPTS,
    RETRY,
    Delivery,
    Subscriber,
    Topics,
    require_dead_letter_topic,
)
from layotto.server.runtime.publish import BulkEntry, Publisher, find_pubsub
from layotto.server.runtime.validation import parse_max_delivery_attempts

__all__ = ["PubSubApi", "PubSubMessages", "consumer_group", "find_pubsub", "to_event_request"]

log = logging.getLogger(__name__)
#: the oneof of a SubscribeTopicEvents request (Layotto's and Dapr's)
_REQUEST_TYPE = "subscribe_topic_events_request_type"


@dataclass(frozen=True)
class PubSubMessages:
    """The message classes of one wire API (Layotto's or Dapr's)."""

    topic_event_request: Any
    stream_response: Any
    initial_response: Any
    has_metadata: bool


def to_event_request(messages: PubSubMessages, delivery: Delivery, path: str = "") -> Any:
    event = delivery.event
    fields: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "spec_version": event.spec_version,
        "data_content_type": event.content_type,
        "data": event.data,
        "topic": delivery.topic,
        "pubsub_name": delivery.pubsub,
    }
    if messages.has_metadata:
        fields["metadata"] = dict(delivery.metadata)
    else:
        fields["path"] = path
    return messages.topic_event_request(**fields)


class StreamSubscriber(Subscriber):
    """One SubscribeTopicEvents stream: events go out through ``outbox``, answers come back by id."""

    def __init__(self, messages: PubSubMessages, *, max_attempts: int, dead_letter_topic: str) -> None:
        super().__init__(max_attempts=max_attempts, dead_letter_topic=dead_letter_topic)
        self.messages = messages
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.pending: dict[str, deque[asyncio.Future[int]]] = defaultdict(deque)

    async def offer(self, delivery: Delivery) -> int:
        request = to_event_request(self.messages, delivery)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[request.id].append(future)
        self.outbox.put_nowait(request)
        try:
            return await future
        finally:
            waiting = self.pending.get(request.id)
            if waiting is not None and not waiting:
                del self.pending[request.id]

    def settle(self, event_id: str, status: int) -> None:
        """Answer the oldest offer of ``event_id``. An id with none pending is logged (DEBUG)
        and ignored, not an error: an answer may race the event's redelivery elsewhere (its
        offer ended when the stream was slow), or repeat one already settled."""
        waiting = self.pending.get(event_id)
        if not waiting:
            log.debug("ignoring an answer for event %r: no delivery of it is pending on this stream", event_id)
        else:
            future = waiting.popleft()
            if not future.done():
                future.set_result(status)

    def close(self) -> None:
        """Every unanswered event is offered again (to another subscriber, or later)."""
        self.closed = True
        for waiting in self.pending.values():
            for future in waiting:
                if not future.done():
                    future.set_result(RETRY)


class PubSubApi:
    def __init__(self, publisher: Publisher, app_id: str, messages: PubSubMessages, topics: Topics) -> None:
        self._publisher = publisher
        self._components = publisher.components
        self._app_id = app_id
        self._messages = messages
        self._topics = topics

    def _pubsub(self, name: str, field: str = "pubsub_name") -> PubSub:
        return find_pubsub(self._components, name, field)

    # -- publishing (the semantics are the runtime layer's: runtime/publish.py) ---------------

    async def PublishEvent(self, request: Any, context: Context) -> empty_pb2.Empty:
        await self._publisher.publish(
            request.pubsub_name, request.topic, request.data, request.data_content_type, request.metadata
        )
        return empty_pb2.Empty()

    async def BulkPublishEvent(self, request: Any, context: Context) -> Any:
        """Dapr's bulk publish: every entry published on its own; the ones that fail are listed."""
        entries = [BulkEntry(e.entry_id, e.event, e.content_type, e.metadata) for e in request.entries]
        failed = await self._publisher.bulk_publish(request.pubsub_name, request.topic, entries, request.metadata)
        return dapr_pubsub_pb2.BulkPublishResponse(
            failedEntries=[
                dapr_pubsub_pb2.BulkPublishResponseFailedEntry(entry_id=entry_id, error=message)
                for entry_id, message in failed.items()
            ]
        )

    # -- streaming subscriptions ------------------------------------------------------------

    async def _stream(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        first = await anext(requests, None)
        if first is None or first.WhichOneof(_REQUEST_TYPE) != "initial_request":
            raise InvalidArgument("initial_request", "must be the first message of the stream")
        initial = first.initial_request
        pubsub = self._pubsub(initial.pubsub_name, "initial_request.pubsub_name")
        if not initial.topic:
            raise InvalidArgument("initial_request.topic", "is empty")
        stream = StreamSubscriber(
            self._messages,
            max_attempts=parse_max_delivery_attempts(
                initial.metadata, "initial_request.metadata", DEFAULT_MAX_ATTEMPTS
            ),
            dead_letter_topic=require_dead_letter_topic(
                initial.topic,
                initial.dead_letter_topic if initial.HasField("dead_letter_topic") else "",
                "initial_request.dead_letter_topic",
            ),
        )
        group = consumer_group(initial.metadata, self._app_id)
        await self._topics.attach(pubsub, initial.topic, group, stream)  # live before the client hears so
        reader = asyncio.create_task(_read_answers(requests, stream))
        getter: asyncio.Future[Any] | None = None
        try:
            yield self._messages.stream_response(initial_response=self._messages.initial_response())
            while True:
                getter = asyncio.ensure_future(stream.outbox.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    refused = None if reader.cancelled() else reader.exception()
                    if isinstance(refused, InvalidArgument):
                        raise refused  # a bad request: the call ends with its status
                    break  # the client half-closed or went away
                yield self._messages.stream_response(event_message=getter.result())
        finally:
            if getter is not None:
                getter.cancel()  # no-op when it is done; never left pending
            reader.cancel()
            stream.close()
            await self._topics.detach(pubsub.name, initial.topic, group, stream)

    async def SubscribeTopicEvents(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for response in self._stream(requests, context):
            yield response


def consumer_group(metadata: Mapping[str, str], app_id: str) -> str:
    """Subscribers of one app share messages; ``consumerID`` metadata names another group."""
    return metadata.get("consumerID") or app_id


async def _read_answers(requests: AsyncIterator[Any], stream: StreamSubscriber) -> None:
    """Settle ``stream``'s events by the client's answers until it half-closes; a second
    ``initial_request``, or a request setting neither, raises InvalidArgument (which ends the
    stream with INVALID_ARGUMENT)."""
    try:
        async for request in requests:
            kind = request.WhichOneof(_REQUEST_TYPE)
            if kind == "event_processed":
                processed = request.event_processed
                stream.settle(processed.id, int(processed.status.status))
            elif kind == "initial_request":
                raise InvalidArgument("initial_request", "sent twice: only the first message of a stream may set it")
            else:
                raise InvalidArgument(_REQUEST_TYPE, "is empty: a request sets initial_request or event_processed")
    except MalformedRequest:
        return  # ends the stream like a half-close; the adapter answers the call with this error
