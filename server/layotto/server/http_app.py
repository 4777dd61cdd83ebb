"""Delivery to an app that speaks only HTTP (``app_protocol: http``, ``app_port``), as Dapr does it.

Subscriptions: ``GET /dapr/subscribe`` on the app (a JSON array of Dapr's v1 or v2 entries; a 404
means none), asked like ListTopicSubscriptions (:mod:`layotto.server.subscription_keeper`), plus the
declared Subscription manifests. Each event is POSTed to its route (the rules' or the default path)
as a CloudEvent (``Content-Type: application/cloudevents+json``; a raw payload as ``data_base64``),
with ``traceparent`` and, when ``APP_API_TOKEN`` is set, ``dapr-api-token``. The answer:

* 2xx: the body's ``{"status": "SUCCESS" | "RETRY" | "DROP"}`` (any case); an empty or non-JSON
  body, or no status, is SUCCESS; another status is RETRY (Dapr's rule);
* 404: dropped (logged);
* any other status, a timeout (``CALL_TIMEOUT_SECONDS``) or a broken connection: RETRY,

through the delivery engine's retries and dead-letter topic (:mod:`layotto.server.runtime.delivery`),
after the pub/sub component's inbound resiliency policy when it has one (as for gRPC apps).
A refused connection (the app is not up) is not an attempt: the event is held and offered again,
every 0.1 s doubling to 2 s, until the app listens, so an app that restarts loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from layotto.server.api_token import TOKEN_HEADER
from layotto.server.app_health import AppHealth
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument
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
from layotto.server.runtime.subscriptions import TopicSubscription, event_json, from_subscribe_answer
from layotto.server.runtime.validation import parse_max_delivery_attempts
from layotto.server.subscription_keeper import AppUnreachable, SubscriptionKeeper
from layotto.tracing import current_traceparent

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
LIST_TIMEOUT_SECONDS = 5.0
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"
REFUSED_FIRST_WAIT_SECONDS = 0.1
REFUSED_MAX_WAIT_SECONDS = 2.0
BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
_STATUSES = {"": SUCCESS, "SUCCESS": SUCCESS, "RETRY": RETRY, "DROP": DROP}


def app_status(http_status: int, body: bytes) -> int:
    """SUCCESS, RETRY or DROP for the app's answer to a delivery (see the module)."""
    if http_status == 404:
        return DROP
    if not 200 <= http_status < 300:
        return RETRY
    try:
        answer = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return SUCCESS
    status = answer.get("status", "") if isinstance(answer, dict) else ""
    return _STATUSES.get(str(status).upper(), RETRY)


def bulk_statuses(http_status: int, body: bytes, entry_ids: Sequence[str]) -> dict[str, int]:
    """Each entry's outcome from the app's answer to a bulk delivery (Dapr's rule): 404 drops them
    all; another non-2xx, or a body that is not ``{"statuses": [...]}``, retries them all; in
    ``{"statuses": [{"entryId", "status"}]}`` an entry with no status, or an unknown one, is RETRY."""
    if http_status == 404:
        return dict.fromkeys(entry_ids, DROP)
    if not 200 <= http_status < 300:
        return {}
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    statuses = answer.get("statuses") if isinstance(answer, dict) else None
    outcomes: dict[str, int] = {}
    wanted = set(entry_ids)
    for item in statuses if isinstance(statuses, list) else []:
        if isinstance(item, dict) and str(item.get("entryId", "")) in wanted:
            outcomes[str(item["entryId"])] = _STATUSES.get(str(item.get("status", "")).upper() or "?", RETRY)
    return outcomes


def _judge_outcome(outcome: int) -> Verdict:
    return Verdict.RETRY if outcome == RETRY else Verdict.SUCCESS


class HttpApp:
    """The app's HTTP server at ``http://127.0.0.1:PORT``: one client session for every call."""

    def __init__(self, base_url: str, app_api_token: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self._token = app_api_token
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self._token:
            headers[TOKEN_HEADER] = self._token
        return headers

    async def healthy(self, path: str) -> bool:
        """Whether ``GET path`` answers a 2xx (the app health probe)."""
        async with self.session().get(self.base_url + path, headers=self.headers()) as response:
            return 200 <= response.status < 300

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpSubscriber(Subscriber):
    """POSTs each event of one subscription to the app's route for it."""

    def __init__(
        self,
        app: HttpApp,
        subscription: TopicSubscription,
        health: AppHealth | None = None,
        policy: Policy | None = None,
    ) -> None:
        """``health``: delivery waits while the app is unhealthy; ``policy``: the pub/sub component's
        inbound resiliency policy (None: one POST per offer). InvalidArgument naming
        ``subscription.route`` when the subscription has no route at all: an HTTP app's events go to
        a path, and without one every event would be skipped (acknowledged and lost)."""
        if not subscription.path and not subscription.rules:
            raise InvalidArgument(
                "subscription.route", "an HTTP app's subscription needs a route, or routes with rules or a default"
            )
        metadata = dict(subscription.metadata)
        super().__init__(
            max_attempts=parse_max_delivery_attempts(metadata, "subscription.metadata", DEFAULT_MAX_ATTEMPTS),
            dead_letter_topic=require_dead_letter_topic(
                subscription.topic, subscription.dead_letter_topic, "subscription.deadLetterTopic"
            ),
        )
        self._app = app
        self._subscription = subscription
        self._health = health
        self._policy = policy
        bulk = subscription.bulk
        self._batcher = (
            Batcher(self._send_batch, max_messages=bulk.max_messages, max_await_ms=bulk.max_await_ms) if bulk else None
        )

    async def offer(self, delivery: Delivery) -> int:
        event = event_json(delivery.event, delivery.topic, delivery.pubsub)
        path = self._subscription.route(event)
        if path is None:
            log.info("no route of %s/%s takes event %s: skipped", delivery.pubsub, delivery.topic, delivery.event.id)
            return SUCCESS
        if self._batcher is not None:
            return await self._batcher.offer(path, delivery)
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self._app.headers(**{"Content-Type": CLOUDEVENT_CONTENT_TYPE})
        traceparent = current_traceparent() or str(event.get("traceparent", ""))
        if traceparent:
            headers["traceparent"] = traceparent
        url = f"{self._app.base_url}/{path.lstrip('/')}"

        async def call(seconds: float) -> int:
            status, answer = await self._post(url, body, headers, seconds)
            outcome = app_status(status, answer)
            if status == 404:
                log.error(
                    "the app has no route %s (404): event %s on %s dropped", path, delivery.event.id, delivery.topic
                )
            elif outcome == RETRY:
                log.warning(
                    "the app answered %d to event %s on %s: %r", status, delivery.event.id, delivery.topic, answer[:200]
                )
            return outcome

        return await inbound_call(self._policy, call, CALL_TIMEOUT_SECONDS, _judge_outcome)

    async def _send_batch(self, path: str, entries: Sequence[Entry]) -> dict[str, int]:
        """One batch under the inbound policy (as a single delivery); each entry's outcome by entry id."""

        async def post(waiting: Sequence[Entry], seconds: float) -> dict[str, int]:
            return await self._post_batch(path, waiting, seconds)

        return await send_under_policy(self._policy, post, entries, CALL_TIMEOUT_SECONDS)

    async def _post_batch(self, path: str, entries: Sequence[Entry], seconds: float) -> dict[str, int]:
        """POSTs ``entries`` in Dapr's bulk shape within ``seconds``; each entry's outcome by entry id."""
        first = entries[0].delivery
        body = {
            "entries": [
                {
                    "entryId": entry.entry_id,
                    "event": event_json(entry.delivery.event, entry.delivery.topic, entry.delivery.pubsub),
                    "contentType": CLOUDEVENT_CONTENT_TYPE,
                    "metadata": dict(entry.delivery.metadata),
                }
                for entry in entries
            ],
            "id": str(uuid.uuid4()),
            "metadata": {},
            "pubsubname": first.pubsub,
            "topic": first.topic,
            "type": BULK_EVENT_TYPE,
        }
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self._app.headers(**{"Content-Type": "application/json"})
        status, answer = await self._post(f"{self._app.base_url}/{path.lstrip('/')}", data, headers, seconds)
        if status == 404:
            log.error("the app has no route %s (404): %d events on %s dropped", path, len(entries), first.topic)
        elif not 200 <= status < 300:
            log.warning("the app answered %d to a batch on %s: %r", status, first.topic, answer[:200])
        return bulk_statuses(status, answer, [entry.entry_id for entry in entries])

    async def _post(self, url: str, body: bytes, headers: dict[str, str], seconds: float) -> tuple[int, bytes]:
        wait = REFUSED_FIRST_WAIT_SECONDS
        while True:
            if self._health is not None:
                await self._health.wait_healthy(lambda: self.closed)
            try:
                timeout = aiohttp.ClientTimeout(total=seconds)
                async with self._app.session().post(url, data=body, headers=headers, timeout=timeout) as response:
                    return response.status, await response.read()
            except aiohttp.ClientConnectorError:  # not listening: held, not an attempt
                if self.closed:
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 2, REFUSED_MAX_WAIT_SECONDS)


class HttpAppSubscriptions(SubscriptionKeeper):
    """The HTTP app's subscriptions (``GET /dapr/subscribe``) and the declared ones, delivered by POST."""

    def __init__(
        self,
        components: ComponentSet,
        topics: Topics,
        *,
        app_id: str,
        app_port: int,
        refresh_seconds: float,
        declared: Sequence[TopicSubscription] = (),
        app_api_token: str = "",
        resiliency: Resiliency | None = None,
    ) -> None:
        self._resiliency = resiliency
        self.app = HttpApp(f"http://127.0.0.1:{app_port}", app_api_token)
        super().__init__(
            components,
            topics,
            app_id=app_id,
            address=self.app.base_url,
            refresh_seconds=refresh_seconds,
            declared=declared,
        )

    async def list_subscriptions(self) -> tuple[list[TopicSubscription], list[str]]:
        url = f"{self.app.base_url}/dapr/subscribe"
        timeout = aiohttp.ClientTimeout(total=LIST_TIMEOUT_SECONDS)
        try:
            async with self.app.session().get(url, headers=self.app.headers(), timeout=timeout) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise AppUnreachable(str(error) or type(error).__name__) from None
        if response.status == 404:
            return [], []
        if not 200 <= response.status < 300:
            raise AppUnreachable(f"GET /dapr/subscribe answered {response.status}")
        try:
            answer: Any = json.loads(body) if body.strip() else []
        except (ValueError, UnicodeDecodeError):
            return [], ["/dapr/subscribe: the answer is not JSON"]
        return from_subscribe_answer(answer)

    def new_subscriber(self, subscription: TopicSubscription) -> Subscriber:
        policy = self._resiliency.inbound(subscription.pubsub) if self._resiliency is not None else None
        return HttpSubscriber(self.app, subscription, self.health, policy)

    async def probe(self, path: str) -> bool:
        """The app health probe: whether ``GET path`` answers a 2xx."""
        return await self.app.healthy(path)

    async def aclose(self) -> None:
        await super().aclose()
        await self.app.aclose()
