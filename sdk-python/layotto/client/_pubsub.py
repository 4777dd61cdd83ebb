"""``client.pubsub``: publishing, and subscribing over the runtime's event stream.

::

    await client.pubsub.publish("redis", "orders", {"id": 7})

    async with client.pubsub.subscribe("redis", "orders") as subscription:
        async for message in subscription:
            handle(message.json())
            await message.ack()

A subscription that loses the runtime (UNAVAILABLE) opens a new stream with backoff;
messages it had not settled are delivered again, so handlers must be idempotent (the
delivery guarantee is at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from layotto.client._errors import ClientClosed, LayottoError
from layotto.client._stream import ResumableStream
from layotto.client._transport import StreamCall, Transport
from layotto.client._ttl import ttl_seconds
from layotto.client._values import Value, encode, string_map
from layotto.proto.runtime.v1 import appcallback_pb2 as cb
from layotto.proto.runtime.v1 import runtime_pb2 as pb

__all__ = ["Message", "PubSubClient", "ReceivedMessage", "Subscription", "TopicStatus"]

#: how long closing a subscription waits for the runtime when the client has no timeout (seconds)
DEFAULT_CLOSE_SECONDS = 10.0


class TopicStatus(enum.IntEnum):
    """A subscriber's answer to a message."""

    SUCCESS = cb.TopicEventResponse.SUCCESS  # handled: never delivered again
    RETRY = cb.TopicEventResponse.RETRY  # delivered again later, then dead-lettered
    DROP = cb.TopicEventResponse.DROP  # discarded (and logged by the runtime)

    def to_response(self) -> cb.TopicEventResponse:
        return cb.TopicEventResponse(status=cb.TopicEventResponse.TopicEventResponseStatus.Value(self.name))


@dataclass(frozen=True)
class Message:
    """A delivered event: its CloudEvent attributes and payload."""

    id: str
    topic: str
    pubsub: str
    data: bytes
    content_type: str
    source: str = ""
    type: str = ""
    spec_version: str = "1.0"
    metadata: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return self.data.decode()

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class ReceivedMessage(Message):
    """A message from a streaming subscription; settle it with ack(), retry() or drop()."""

    _settle: Callable[[str, TopicStatus], Awaitable[None]] | None = field(default=None, repr=False, compare=False)

    async def ack(self) -> None:
        """Handled: never delivered again. Returns once the answer is written to the stream.
        Raises :class:`ClientClosed` once the subscription is closed (its ``async with`` left):
        the runtime delivers the message again. After a lost stream (the subscription reopened
        it) it does nothing: the message comes again on the new stream."""
        await self._answer(TopicStatus.SUCCESS)

    async def retry(self) -> None:
        """Deliver it again later (then dead-letter it). Returns once the answer is written;
        raises :class:`ClientClosed` as ``ack()`` does."""
        await self._answer(TopicStatus.RETRY)

    async def drop(self) -> None:
        """Discard it (the runtime logs it). Returns once the answer is written; raises
        :class:`ClientClosed` as ``ack()`` does."""
        await self._answer(TopicStatus.DROP)

    async def _answer(self, status: TopicStatus) -> None:
        if self._settle is not None:
            await self._settle(self.id, status)


def message_from_event(event: Any, settle: Callable[[str, TopicStatus], Awaitable[None]] | None = None) -> Any:
    fields = {
        "id": event.id,
        "topic": event.topic,
        "pubsub": event.pubsub_name,
        "data": bytes(event.data),
        "content_type": event.data_content_type,
        "source": event.source,
        "type": event.type,
        "spec_version": event.spec_version,
        "metadata": dict(event.metadata),
    }
    return ReceivedMessage(**fields, _settle=settle) if settle is not None else Message(**fields)


def subscription_metadata(metadata: Mapping[str, str] | None, max_delivery_attempts: int | None) -> dict[str, str]:
    """A subscription's metadata, with ``maxDeliveryAttempts`` when one is given."""
    meta = string_map(metadata, "metadata")
    if max_delivery_attempts is not None:
        meta["maxDeliveryAttempts"] = str(max_delivery_attempts)
    return meta


def content_type_for(data: Value) -> str:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return "application/octet-stream"
    if isinstance(data, str):
        return "text/plain"
    return "application/json"


class PubSubClient:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def publish(
        self,
        pubsub: str,
        topic: str,
        data: Value,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        ttl: float | dt.timedelta | None = None,
        raw: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Publish ``data`` (bytes as is, str as text, anything else as JSON) to ``topic``.

        The runtime wraps it in a CloudEvent unless ``raw``. ``ttl`` (seconds or a timedelta)
        expires it: None is no TTL, a positive duration is sent as whole seconds rounded up,
        anything else (0, -1, NaN, infinity, a bool) raises InvalidArgument naming ``ttl`` before
        any call.
        """
        meta = string_map(metadata, "metadata")
        if ttl is not None:
            meta["ttlInSeconds"] = str(ttl_seconds(ttl))
        if raw:
            meta["rawPayload"] = "true"
        request = pb.PublishEventRequest(
            pubsub_name=pubsub,
            topic=topic,
            data=encode(data),
            data_content_type=content_type or content_type_for(data),
            metadata=meta,
        )
        await self._transport.unary("PublishEvent", request, timeout)

    def subscribe(
        self,
        pubsub: str,
        topic: str,
        *,
        metadata: Mapping[str, str] | None = None,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int | None = None,
    ) -> Subscription:
        """A streaming subscription; use it with ``async with`` and iterate it."""
        meta = subscription_metadata(metadata, max_delivery_attempts)
        initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=pubsub, topic=topic, metadata=meta)
        if dead_letter_topic:
            initial.dead_letter_topic = dead_letter_topic
        return Subscription(self._transport, initial)


class Subscription(ResumableStream):
    """One topic's messages, over SubscribeTopicEvents; reconnects when the runtime goes away.

    ``await message.ack()`` (or ``retry()``, ``drop()``) returns once the answer is written to
    the stream. Leaving the ``async with`` block (or ``aclose()``) half-closes the stream and
    waits for the runtime to end it, up to the client's timeout (10 s when it has none), so
    every awaited answer reaches the runtime; messages not yet answered are delivered again,
    and answering one afterwards raises :class:`ClientClosed`.
    """

    def __init__(self, transport: Transport, initial: pb.SubscribeTopicEventsRequestInitial) -> None:
        super().__init__(transport)
        self._initial = initial
        self._writing = asyncio.Lock()  # one write at a time on the stream
        self._generation = 0
        self._half_closed = False

    async def __aenter__(self) -> Subscription:
        await self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _start(self) -> StreamCall:
        self._generation += 1
        call = self._transport.stream("SubscribeTopicEvents")
        await call.write(pb.SubscribeTopicEventsRequest(initial_request=self._initial))
        return call

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ReceivedMessage:
        while (response := await self._read()) is not None:  # un-acked messages come again on a new stream
            if response.HasField("event_message"):  # not a new stream's initial response
                result: ReceivedMessage = message_from_event(response.event_message, self._settler(self._generation))
                return result
        raise StopAsyncIteration

    def _settler(self, generation: int) -> Callable[[str, TopicStatus], Awaitable[None]]:
        async def settle(event_id: str, status: TopicStatus) -> None:
            processed = pb.SubscribeTopicEventsRequestProcessed(id=event_id, status=status.to_response())
            async with self._writing:
                if self._half_closed:
                    message = f"the subscription is closed: {status.name} of message {event_id!r} not sent"
                    raise ClientClosed(f"{message} (it is delivered again)", code="CANCELLED")
                if generation != self._generation or self._call is None or self._ended:
                    return  # that stream is gone: the runtime delivers the message again
                with contextlib.suppress(LayottoError):  # a lost stream: delivered again too
                    await self._call.write(pb.SubscribeTopicEventsRequest(event_processed=processed))

        return settle

    async def aclose(self) -> None:
        """Half-close the stream and wait (bounded) for the runtime to end it; idempotent."""
        if self._closed:
            return
        self._closed = True
        call = self._call
        if call is None:
            return
        try:
            async with asyncio.timeout(self._transport.timeout or DEFAULT_CLOSE_SECONDS):
                async with self._writing:  # answers being written go first
                    self._half_closed = True
                    await call.done_writing()
                await self._drain()
        except (TimeoutError, LayottoError):
            pass  # the runtime is gone or slow: what it did not hear is delivered again
        finally:
            self._half_closed = True  # also when closing timed out before the half-close
            call.cancel()  # no-op once the call has ended
