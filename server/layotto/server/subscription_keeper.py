"""Keeping the runtime subscribed to what the app wants, whatever protocol it speaks.

The keeper asks the app for its subscriptions when it starts and again every ``refresh_seconds``
(while the app is unreachable: after 1 s, doubling up to 10 s, logged once until it answers), adds
the subscriptions declared in Subscription manifests (those whose ``scopes`` name the app, or have
none: a listed one for a declared (pubsub, topic) is ignored, said once), and makes each one a
subscriber of the delivery engine. Subscriptions naming an unknown pubsub, a bad
``maxDeliveryAttempts``, their own topic as dead-letter topic or an unparsable rule are logged once
(one line) and skipped. Subclasses say how the app is asked (:meth:`list_subscriptions`) and how an
event reaches it (:meth:`new_subscriber`).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Sequence

from layotto.server.aio import stop_task
from layotto.server.api.pubsub import consumer_group, find_pubsub
from layotto.server.app_health import AppHealth
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import LayottoError
from layotto.server.runtime.delivery import Subscriber, Topics
from layotto.server.runtime.metadata import AppSubscription
from layotto.server.runtime.subscriptions import TopicSubscription

log = logging.getLogger(__name__)

UNREACHABLE_RETRY_SECONDS = 1.0  # first wait after the app did not answer; doubles up to the max
UNREACHABLE_MAX_RETRY_SECONDS = 10.0


class AppUnreachable(Exception):
    """The app did not answer the listing; the message says why (one line)."""


class SubscriptionKeeper(abc.ABC):
    """Keeps the runtime subscribed to the app's listed and declared subscriptions (see the module)."""

    def __init__(
        self,
        components: ComponentSet,
        topics: Topics,
        *,
        app_id: str,
        address: str,
        refresh_seconds: float,
        declared: Sequence[TopicSubscription] = (),
    ) -> None:
        self._components = components
        self._topics = topics
        self._app_id = app_id
        self.address = address
        self._refresh_seconds = refresh_seconds
        self._declared = [s for s in declared if s.applies_to(app_id)]
        self._active: dict[TopicSubscription, Subscriber] = {}
        self._refused: set[TopicSubscription] = set()  # logged once, skipped while the app lists them
        self._said: set[str] = set()  # refusals of listed entries, logged once each
        self._task: asyncio.Task[None] | None = None
        self.health: AppHealth | None = None  # when set (before start), delivery waits while the app is unhealthy
        self.listed = asyncio.Event()  # set after the first successful listing

    @abc.abstractmethod
    async def list_subscriptions(self) -> tuple[list[TopicSubscription], list[str]]:
        """(the app's subscriptions, one line per entry refused); AppUnreachable when it does not answer."""

    @abc.abstractmethod
    def new_subscriber(self, subscription: TopicSubscription) -> Subscriber:
        """The delivery engine's subscriber for ``subscription``; LayottoError when it is wrong."""

    @abc.abstractmethod
    async def probe(self, path: str) -> bool:
        """The app health probe: True when the app says it is healthy (``path``: an HTTP app's)."""

    def start(self) -> None:
        if self.health is not None:
            self.health.start()
        self._task = asyncio.create_task(self._keep_subscribed())

    async def _keep_subscribed(self) -> None:
        retry = UNREACHABLE_RETRY_SECONDS
        reachable = True  # until an attempt fails; an unreachable app is logged once, not at every retry
        while True:
            try:
                listed, refused = await self.list_subscriptions()
            except AppUnreachable as error:
                self._log_unreachable(str(error), first=reachable)
                reachable = False
                await asyncio.sleep(retry)
                retry = min(retry * 2, UNREACHABLE_MAX_RETRY_SECONDS)
                continue
            if not reachable:
                log.info("app at %s answers again", self.address)
            reachable, retry = True, UNREACHABLE_RETRY_SECONDS
            wanted, shadowed = self._with_declared(listed)
            self._say([*refused, *shadowed])
            await self.apply(wanted)
            self.listed.set()
            await asyncio.sleep(self._refresh_seconds)

    def _say(self, refusals: list[str]) -> None:
        for line in refusals:
            if line not in self._said:
                log.warning("ignoring the app's subscription %s", line)
        self._said = set(refusals)

    def _with_declared(self, listed: list[TopicSubscription]) -> tuple[list[TopicSubscription], list[str]]:
        """(the declared subscriptions and the listed ones for other topics, a line per listed one shadowed)."""
        declared = {(s.pubsub, s.topic) for s in self._declared}
        shadowed = [f"to {s.pubsub}/{s.topic}: a Subscription manifest declares it already" for s in listed]
        kept = [s for s in listed if (s.pubsub, s.topic) not in declared]
        return [*self._declared, *kept], [line for s, line in zip(listed, shadowed, strict=True) if s not in kept]

    def _log_unreachable(self, why: str, *, first: bool) -> None:
        if first:
            log.info(
                "app at %s not reachable (%s); asking again every %g-%g s (not logged until it answers)",
                self.address,
                why,
                UNREACHABLE_RETRY_SECONDS,
                UNREACHABLE_MAX_RETRY_SECONDS,
            )
        else:
            log.debug("app at %s still not reachable (%s)", self.address, why)

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
            subscriber = self.new_subscriber(subscription)
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

    def active(self) -> list[AppSubscription]:
        """The subscriptions delivered to the app now, each DECLARATIVE or PROGRAMMATIC (the metadata API's)."""
        return [
            AppSubscription(s, "DECLARATIVE" if s in self._declared else "PROGRAMMATIC")
            for s in sorted(self._active, key=lambda s: (s.pubsub, s.topic))
        ]

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        if self.health is not None:
            await self.health.aclose()
        await self.apply([])
