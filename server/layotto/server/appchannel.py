"""Delivery to the application through its AppCallback server.

The runtime asks the app's ``ListTopicSubscriptions`` when it starts and again every
``subscriptions_refresh_seconds`` (while the app is unreachable: after 1 s, doubling up to 10 s,
logged once until it answers), so an app
that starts after the runtime, or changes its subscriptions, is picked up; Layotto asks
once and caches the answer forever. Each subscription is one subscriber of the delivery
engine; its events go to ``OnTopicEvent``. Subscriptions naming an unknown pubsub, a bad
``maxDeliveryAttempts`` or their own topic as dead-letter topic are logged once (one line) and
skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2

from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_appcallback_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc as dapr_appcallback_grpc
from layotto.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from layotto.server.aio import stop_task
from layotto.server.api.pubsub import PubSubMessages, consumer_group, find_pubsub, to_event_request
from layotto.server.api_token import sending_token
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import LayottoError
from layotto.server.runtime.delivery import (
    DEFAULT_MAX_ATTEMPTS,
    RETRY,
    Delivery,
    Subscriber,
    Topics,
    require_dead_letter_topic,
)
from layotto.server.runtime.resiliency import Policy, Resiliency, Verdict, inbound_call
from layotto.server.runtime.validation import parse_max_delivery_attempts

if TYPE_CHECKING:
    from layotto.tracing import Tracing

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
UNREACHABLE_RETRY_SECONDS = 1.0  # first wait after the app did not answer; doubles up to the max
UNREACHABLE_MAX_RETRY_SECONDS = 10.0
DEAD_LETTER_METADATA = "deadLetterTopic"

LAYOTTO_CALLBACK = PubSubMessages(appcallback_pb2.TopicEventRequest, None, None, has_metadata=True)
DAPR_CALLBACK = PubSubMessages(dapr_appcallback_pb2.TopicEventRequest, None, None, has_metadata=False)


@dataclass(frozen=True)
class TopicSubscription:
    """One entry of the app's ListTopicSubscriptions answer, protocol-neutral."""

    pubsub: str
    topic: str
    metadata: tuple[tuple[str, str], ...]
    dead_letter_topic: str = ""
    path: str = ""


def from_listing(response: Any) -> list[TopicSubscription]:
    out = []
    for sub in response.subscriptions:
        metadata = dict(sub.metadata)
        dead_letter = getattr(sub, "dead_letter_topic", "") or metadata.get(DEAD_LETTER_METADATA, "")
        path = sub.routes.default if hasattr(sub, "routes") else ""
        out.append(TopicSubscription(sub.pubsub_name, sub.topic, tuple(sorted(metadata.items())), dead_letter, path))
    return out


def _judge_status(status: int) -> Verdict:
    return Verdict.RETRY if status == RETRY else Verdict.SUCCESS


class CallbackSubscriber(Subscriber):
    def __init__(
        self,
        on_topic_event: Callable[..., Awaitable[Any]],
        messages: PubSubMessages,
        subscription: TopicSubscription,
        policy: Policy | None = None,
    ) -> None:
        """``policy``: the pub/sub component's inbound resiliency policy (None: one call per offer)."""
        metadata = dict(subscription.metadata)
        super().__init__(
            max_attempts=parse_max_delivery_attempts(metadata, "subscription.metadata", DEFAULT_MAX_ATTEMPTS),
            dead_letter_topic=require_dead_letter_topic(
                subscription.topic, subscription.dead_letter_topic, "subscription.dead_letter_topic"
            ),
        )
        self._on_topic_event = on_topic_event
        self._messages = messages
        self._path = subscription.path
        self._policy = policy

    async def offer(self, delivery: Delivery) -> int:
        """The app's answer (SUCCESS, RETRY, DROP): under the inbound policy, an error or RETRY
        is retried by the policy before the delivery's own retries see it."""
        request = to_event_request(self._messages, delivery, self._path)

        async def call(seconds: float) -> int:
            return int((await self._on_topic_event(request, timeout=seconds)).status)

        return await inbound_call(self._policy, call, CALL_TIMEOUT_SECONDS, _judge_status)


class AppSubscriptions:
    """Keeps the runtime subscribed to what the app's ListTopicSubscriptions answers."""

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
        resiliency: Resiliency | None = None,
    ) -> None:
        self._components = components
        self._resiliency = resiliency
        self._topics = topics
        self._app_id = app_id
        self._address = address
        self._refresh_seconds = refresh_seconds
        interceptors = tracing.client_interceptors(address) if tracing is not None else None
        # every callback carries APP_API_TOKEN as dapr-api-token when it is set
        self._channel = grpc.aio.insecure_channel(address, interceptors=sending_token(app_api_token, interceptors))
        if protocol == "dapr":
            self._stub: Any = dapr_appcallback_grpc.AppCallbackStub(self._channel)
            self._messages = DAPR_CALLBACK
        else:
            self._stub = appcallback_pb2_grpc.AppCallbackStub(self._channel)
            self._messages = LAYOTTO_CALLBACK
        self._active: dict[TopicSubscription, CallbackSubscriber] = {}
        self._refused: set[TopicSubscription] = set()  # logged once, skipped while the app lists them
        self._task: asyncio.Task[None] | None = None
        self.listed = asyncio.Event()  # set after the first successful listing

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_subscribed())

    async def _keep_subscribed(self) -> None:
        retry = UNREACHABLE_RETRY_SECONDS
        reachable = True  # until an attempt fails; an unreachable app is logged once, not at every retry
        while True:
            try:
                response = await self._stub.ListTopicSubscriptions(empty_pb2.Empty(), timeout=5.0)
            except grpc.aio.AioRpcError as error:
                self._log_unreachable(error, first=reachable)
                reachable = False
                await asyncio.sleep(retry)
                retry = min(retry * 2, UNREACHABLE_MAX_RETRY_SECONDS)
                continue
            if not reachable:
                log.info("app callback at %s answers again", self._address)
            reachable, retry = True, UNREACHABLE_RETRY_SECONDS
            await self.apply(from_listing(response))
            self.listed.set()
            await asyncio.sleep(self._refresh_seconds)

    def _log_unreachable(self, error: grpc.aio.AioRpcError, *, first: bool) -> None:
        if first:
            log.info(
                "app callback at %s not reachable (%s); asking again every %g-%g s (not logged until it answers)",
                self._address,
                error.code().name,
                UNREACHABLE_RETRY_SECONDS,
                UNREACHABLE_MAX_RETRY_SECONDS,
            )
        else:
            log.debug("app callback at %s still not reachable (%s)", self._address, error.code().name)

    async def apply(self, wanted: list[TopicSubscription]) -> None:
        """Subscribe to what is new in ``wanted`` and unsubscribe from what left it."""
        for subscription in [s for s in self._active if s not in wanted]:
            group = consumer_group(dict(subscription.metadata), self._app_id)
            await self._topics.detach(subscription.pubsub, subscription.topic, group, self._active.pop(subscription))
            log.info("app unsubscribed from %s/%s", subscription.pubsub, subscription.topic)
        self._refused &= set(wanted)  # one listed again after it left is logged again
        for subscription in wanted:
            if subscription not in self._active and subscription not in self._refused:
                await self._subscribe(subscription)

    async def _subscribe(self, subscription: TopicSubscription) -> None:
        metadata = dict(subscription.metadata)
        where = f"{subscription.pubsub}/{subscription.topic}"
        try:
            pubsub = find_pubsub(self._components, subscription.pubsub, "subscription.pubsub_name")
            policy = self._resiliency.inbound(subscription.pubsub) if self._resiliency is not None else None
            subscriber = CallbackSubscriber(self._stub.OnTopicEvent, self._messages, subscription, policy)
        except LayottoError as error:  # the subscription itself is wrong: said once, skipped while listed
            log.warning("ignoring the app's subscription to %s: %s", where, error)
            self._refused.add(subscription)
            return
        try:
            await self._topics.attach(pubsub, subscription.topic, consumer_group(metadata, self._app_id), subscriber)
        except LayottoError as error:  # the broker: tried again at the next listing
            log.warning("cannot subscribe the app to %s yet: %s", where, error)
            return
        self._active[subscription] = subscriber
        log.info("app subscribed to %s", where)

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        await self.apply([])
        await self._channel.close(None)
