"""Delivery to the application through its AppCallback server.

The runtime asks the app's ``ListTopicSubscriptions`` (an app that does not implement it lists
none) and keeps the runtime subscribed as :mod:`layotto.server.subscription_keeper` says (Layotto
asks once and caches the answer forever); declared Subscription manifests are added. Each
subscription is one subscriber of the delivery engine; its events go to ``OnTopicEvent``, with the
path of the first routing rule that matches (or the default path) on Dapr's callback.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2

from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_appcallback_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc as dapr_appcallback_grpc
from layotto.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from layotto.server.api.pubsub import PubSubMessages, to_event_request
from layotto.server.api_token import sending_token
from layotto.server.app_health import AppHealth
from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.batching import Batcher, Entry, send_under_policy
from layotto.server.runtime.delivery import (
    DEFAULT_MAX_ATTEMPTS,
    DROP,
    RETRY,
    SUCCESS,
    Delivery,
    Subscriber,
    Topics,
    require_dead_letter_topic,
)
from layotto.server.runtime.resiliency import Policy, Resiliency, Verdict, inbound_call
from layotto.server.runtime.subscriptions import TopicSubscription, event_json, from_listing
from layotto.server.runtime.validation import parse_max_delivery_attempts
from layotto.server.subscription_keeper import AppUnreachable, SubscriptionKeeper

if TYPE_CHECKING:
    from layotto.tracing import Tracing

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"
LIST_TIMEOUT_SECONDS = 5.0

LAYOTTO_CALLBACK = PubSubMessages(appcallback_pb2.TopicEventRequest, None, None, has_metadata=True)
DAPR_CALLBACK = PubSubMessages(dapr_appcallback_pb2.TopicEventRequest, None, None, has_metadata=False)

__all__ = ["AppSubscriptions", "CallbackSubscriber", "TopicSubscription", "from_listing"]


def _judge_status(status: int) -> Verdict:
    return Verdict.RETRY if status == RETRY else Verdict.SUCCESS


class CallbackSubscriber(Subscriber):
    def __init__(
        self,
        on_topic_event: Callable[..., Awaitable[Any]],
        messages: PubSubMessages,
        subscription: TopicSubscription,
        policy: Policy | None = None,
        health: AppHealth | None = None,
        *,
        on_bulk_topic_event: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        """``policy``: the pub/sub component's inbound resiliency policy (None: one call per offer);
        ``health``: delivery waits while the app is unhealthy; ``on_bulk_topic_event``: Dapr's
        ``AppCallbackAlpha/OnBulkTopicEventAlpha1``, used when the subscription is a bulk one (an app
        answering UNIMPLEMENTED gets each event of the batch, and every later one, by OnTopicEvent)."""
        metadata = dict(subscription.metadata)
        super().__init__(
            max_attempts=parse_max_delivery_attempts(metadata, "subscription.metadata", DEFAULT_MAX_ATTEMPTS),
            dead_letter_topic=require_dead_letter_topic(
                subscription.topic, subscription.dead_letter_topic, "subscription.dead_letter_topic"
            ),
        )
        self._on_topic_event = on_topic_event
        self._messages = messages
        self._subscription = subscription
        self._policy = policy
        self._health = health
        self._on_bulk_topic_event = on_bulk_topic_event
        bulk = subscription.bulk
        self._batcher = (
            Batcher(self._send_batch, max_messages=bulk.max_messages, max_await_ms=bulk.max_await_ms)
            if bulk is not None and on_bulk_topic_event is not None
            else None
        )

    async def offer(self, delivery: Delivery) -> int:
        """The app's answer (SUCCESS, RETRY, DROP) at the path the routes choose: under the inbound
        policy, an error or RETRY is retried by the policy before the delivery's own retries see it."""
        path: str | None = self._subscription.path
        if self._subscription.rules:
            path = self._subscription.route(event_json(delivery.event, delivery.topic, delivery.pubsub))
            if path is None:
                log.info(
                    "no route of %s/%s takes event %s: skipped", delivery.pubsub, delivery.topic, delivery.event.id
                )
                return SUCCESS
        if self._batcher is not None:
            return await self._batcher.offer(path or "", delivery)
        return await self._offer_one(delivery, path or "")

    async def _offer_one(self, delivery: Delivery, path: str) -> int:
        if self._health is not None:
            await self._health.wait_healthy(lambda: self.closed)
        request = to_event_request(self._messages, delivery, path)

        async def call(seconds: float) -> int:
            return int((await self._on_topic_event(request, timeout=seconds)).status)

        return await inbound_call(self._policy, call, CALL_TIMEOUT_SECONDS, _judge_status)

    async def _send_batch(self, path: str, entries: Sequence[Entry]) -> dict[str, int]:
        """OnBulkTopicEventAlpha1 calls under the inbound policy (as a single delivery); each entry's
        outcome by entry id (a missing one is RETRY)."""
        on_bulk_topic_event = self._on_bulk_topic_event
        assert on_bulk_topic_event is not None
        if self._health is not None:
            await self._health.wait_healthy(lambda: self.closed)

        async def call(waiting: Sequence[Entry], seconds: float) -> dict[str, int]:
            response = await on_bulk_topic_event(bulk_request(waiting, path), timeout=seconds)
            return {s.entry_id: s.status if s.status in (SUCCESS, RETRY, DROP) else RETRY for s in response.statuses}

        try:
            return await send_under_policy(self._policy, call, entries, CALL_TIMEOUT_SECONDS, _unless_unimplemented)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            log.info("the app has no OnBulkTopicEventAlpha1: events of %s go one at a time", self._subscription.topic)
            self._batcher = None
            answers = await asyncio.gather(*(_answered(self._offer_one(e.delivery, path)) for e in entries))
            return {entry.entry_id: answer for entry, answer in zip(entries, answers, strict=True)}


def _unless_unimplemented(error: Exception) -> Verdict:
    """An app without AppCallbackAlpha is not failing (its events go one at a time): not retried."""
    if isinstance(error, grpc.aio.AioRpcError) and error.code() is grpc.StatusCode.UNIMPLEMENTED:
        return Verdict.SUCCESS
    return Verdict.RETRY


async def _answered(call: Awaitable[int]) -> int:
    try:
        return await call
    except Exception:  # as the delivery engine counts a failing offer
        return RETRY


def bulk_request(entries: Sequence[Entry], path: str) -> Any:
    """Dapr's TopicEventBulkRequest for ``entries`` (each a TopicEventCERequest) sent to ``path``."""
    first = entries[0].delivery
    request = dapr_appcallback_pb2.TopicEventBulkRequest(
        id=str(uuid.uuid4()), topic=first.topic, pubsub_name=first.pubsub, type=BULK_EVENT_TYPE, path=path
    )
    for entry in entries:
        event = entry.delivery.event
        cloud_event = dapr_appcallback_pb2.TopicEventCERequest(
            id=event.id,
            source=event.source,
            type=event.type,
            spec_version=event.spec_version,
            data_content_type=event.content_type,
            data=event.data,
        )
        request.entries.add(
            entry_id=entry.entry_id,
            cloud_event=cloud_event,
            content_type=CLOUDEVENT_CONTENT_TYPE,
            metadata=dict(entry.delivery.metadata),
        )
    return request


class AppSubscriptions(SubscriptionKeeper):
    """Keeps the runtime subscribed to what the app's ListTopicSubscriptions answers (and the declared)."""

    def __init__(
        self,
        components: ComponentSet,
        topics: Topics,
        *,
        app_id: str,
        address: str,
        protocol: str,
        refresh_seconds: float,
        tracing: Tracing | None = None,
        app_api_token: str = "",
        declared: Sequence[TopicSubscription] = (),
        resiliency: Resiliency | None = None,
    ) -> None:
        super().__init__(
            components, topics, app_id=app_id, address=address, refresh_seconds=refresh_seconds, declared=declared
        )
        self._resiliency = resiliency
        interceptors = tracing.client_interceptors(address) if tracing is not None else None
        # every callback carries APP_API_TOKEN as dapr-api-token when it is set
        self._channel = grpc.aio.insecure_channel(address, interceptors=sending_token(app_api_token, interceptors))
        if protocol == "dapr":
            self._stub: Any = dapr_appcallback_grpc.AppCallbackStub(self._channel)
            self._messages = DAPR_CALLBACK
            self._on_bulk: Any = dapr_appcallback_grpc.AppCallbackAlphaStub(self._channel).OnBulkTopicEventAlpha1
        else:
            self._stub = appcallback_pb2_grpc.AppCallbackStub(self._channel)
            self._messages = LAYOTTO_CALLBACK
            self._on_bulk = None  # Layotto's AppCallback has no bulk call: one event at a time
        self._health_stub = dapr_appcallback_grpc.AppCallbackHealthCheckStub(self._channel)

    async def list_subscriptions(self) -> tuple[list[TopicSubscription], list[str]]:
        try:
            response = await self._stub.ListTopicSubscriptions(empty_pb2.Empty(), timeout=LIST_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                return [], []  # an app that only has declared subscriptions (or none)
            raise AppUnreachable(error.code().name) from None
        return from_listing(response)

    def new_subscriber(self, subscription: TopicSubscription) -> Subscriber:
        policy = self._resiliency.inbound(subscription.pubsub) if self._resiliency is not None else None
        return CallbackSubscriber(
            self._stub.OnTopicEvent,
            self._messages,
            subscription,
            policy,
            self.health,
            on_bulk_topic_event=self._on_bulk,
        )

    async def probe(self, path: str) -> bool:
        """The app health probe: whether the app answers Dapr's ``AppCallbackHealthCheck/HealthCheck``
        (an app that does not implement it, UNIMPLEMENTED, is up: healthy; ``path`` is for HTTP apps)."""
        try:
            await self._health_stub.HealthCheck(empty_pb2.Empty())
        except grpc.aio.AioRpcError as error:
            return error.code() is grpc.StatusCode.UNIMPLEMENTED
        return True

    async def aclose(self) -> None:
        await super().aclose()
        await self._channel.close(None)
