"""Bulk subscribe (Dapr's ``bulkSubscribe``): events reach the app in batches, each entry's status
going through the same retry and dead-letter engine as single deliveries. An aiohttp app and raw
Dapr AppCallback / AppCallbackAlpha gRPC servicers in-process, one runtime in-process; semantics on
the in-memory broker (``concurrency`` above the batch size, so batches fill), one round trip on Redis."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from backends import pubsub_metadata, require
from server_helpers import free_port
from test_http_app import FakeApp, listed, wait_for

from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_cb
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc as dapr_cb_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig
from layotto.server.errors import InvalidArgument
from layotto.server.http_app import bulk_statuses
from layotto.server.runtime.delivery import DROP, RETRY, SUCCESS
from layotto.server.runtime.resiliency import parse_resiliency
from layotto.server.runtime.resiliency.breaker import State
from layotto.server.runtime.subscriptions import BulkSubscribe, from_dapr_json

ENTRY = {"pubsubname": "bus", "topic": "t", "route": "/t"}


def test_bulk_subscribe_defaults_and_one_clear_line_for_bad_values() -> None:
    assert from_dapr_json({**ENTRY, "bulkSubscribe": {"enabled": True}}, "s").bulk == BulkSubscribe(100, 1000)
    assert from_dapr_json({**ENTRY, "bulkSubscribe": {"enabled": False, "maxMessagesCount": 5}}, "s").bulk is None
    assert from_dapr_json(ENTRY, "s").bulk is None
    tuned = {"enabled": True, "maxMessagesCount": 7, "maxAwaitDurationMs": 20}
    assert from_dapr_json({**ENTRY, "bulkSubscribe": tuned}, "s").bulk == BulkSubscribe(7, 20)
    bad = {
        "maxMessagesCount": (-1, "s.bulkSubscribe.maxMessagesCount: expected an integer from 1 to 10000, got -1"),
        "maxAwaitDurationMs": ("5", "s.bulkSubscribe.maxAwaitDurationMs: expected an integer from 1 to 60000"),
        "enabled": ("yes", "s.bulkSubscribe.enabled: expected true or false, got 'yes'"),
    }
    for key, (value, message) in bad.items():
        with pytest.raises(InvalidArgument) as raised:
            from_dapr_json({**ENTRY, "bulkSubscribe": {"enabled": True, key: value}}, "s")
        assert raised.value.message.startswith(message) and "\n" not in raised.value.message
    with pytest.raises(InvalidArgument, match="maxMessagesCount: expected an integer from 1 to 10000, got 10001"):
        from_dapr_json({**ENTRY, "bulkSubscribe": {"enabled": True, "maxMessagesCount": 10001}}, "s")


def test_bulk_answer_rules_follow_dapr() -> None:
    ids = ["a", "b", "c"]
    body = json.dumps({"statuses": [{"entryId": "a", "status": "SUCCESS"}, {"entryId": "b", "status": "drop"}]})
    assert bulk_statuses(200, body.encode(), ids) == {"a": SUCCESS, "b": DROP}  # c: missing, so RETRY
    odd = json.dumps({"statuses": [{"entryId": "a", "status": "later"}, {"entryId": "zzz", "status": "SUCCESS"}]})
    assert bulk_statuses(200, odd.encode(), ids) == {"a": RETRY}
    assert bulk_statuses(404, b"", ids) == dict.fromkeys(ids, DROP)
    assert bulk_statuses(500, body.encode(), ids) == {}
    assert bulk_statuses(200, b"not json", ids) == {}


class BulkApp(FakeApp):
    """Answers each batch entry by its event's ``data.answer``: RETRY (the first time only), DROP,
    MISSING (no status, the first time only) or SUCCESS; records every batch by path."""

    def __init__(self, subscriptions: Any) -> None:
        super().__init__(subscriptions)
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self.seen: Counter[str] = Counter()
        self.number: dict[str, int] = {}  # event id -> data.n

    async def _event(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if "entries" not in body:
            return await self._event_from(request.path, body)
        self.batches.setdefault(request.path, []).append(body)
        statuses = []
        for entry in body["entries"]:
            event = entry["event"]
            self.seen[event["id"]] += 1
            self.number[event["id"]] = event["data"]["n"]
            answer = event["data"]["answer"]
            if answer in ("RETRY", "MISSING") and self.seen[event["id"]] > 1:
                answer = "SUCCESS"
            if answer != "MISSING":
                statuses.append({"entryId": entry["entryId"], "status": answer})
        return web.json_response({"statuses": statuses})

    async def _event_from(self, path: str, body: dict[str, Any]) -> web.Response:
        self.received[path].append(body)
        return web.json_response({"status": "SUCCESS"})

    def sizes(self, path: str) -> list[int]:
        return [len(batch["entries"]) for batch in self.batches.get(path, [])]


def config_for(tmp_path: Path, broker: str = "in-memory", **overrides: Any) -> RuntimeConfig:
    extra = {"concurrency": "50"} if broker == "in-memory" else {"concurrency": "10"}
    return RuntimeConfig(
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"pubsub": {"bus": ComponentConfig(broker, pubsub_metadata(broker, **extra))}},
        **overrides,
    )


async def bulk_publish(runtime: Runtime, topic: str, datas: list[Any]) -> None:
    """One bulk publish, so every message is in the broker before the first batch goes."""
    entries = [{"entryId": str(i), "event": data, "contentType": "application/json"} for i, data in enumerate(datas)]
    url = f"http://127.0.0.1:{runtime.http_port}/v1.0-alpha1/publish/bulk/bus/{topic}"
    async with aiohttp.ClientSession() as http, http.post(url, json=entries) as response:
        assert response.status == 204, await response.text()


async def test_an_http_app_gets_bounded_batches_and_per_entry_statuses_go_through_retry_and_dead_letter(
    tmp_path: Path,
) -> None:
    bulk = {"enabled": True, "maxMessagesCount": 3, "maxAwaitDurationMs": 300}
    app = BulkApp(
        [
            {
                "pubsubname": "bus",
                "topic": "orders",
                "route": "/orders",
                "bulkSubscribe": bulk,
                "deadLetterTopic": "dead",
            },
            {"pubsubname": "bus", "topic": "dead", "route": "/dead"},
            {"pubsubname": "bus", "topic": "few", "route": "/few", "bulkSubscribe": bulk},
        ]
    )
    config = config_for(tmp_path, app_protocol="http", app_port=app.port)
    answers = ["SUCCESS", "RETRY", "DROP", "MISSING", "SUCCESS", "SUCCESS", "SUCCESS"]
    async with app.serving(), Runtime(config) as runtime:
        await listed(runtime)
        await bulk_publish(runtime, "orders", [{"n": i, "answer": a} for i, a in enumerate(answers)])
        await bulk_publish(runtime, "few", [{"n": 10, "answer": "SUCCESS"}, {"n": 11, "answer": "SUCCESS"}])
        await wait_for(lambda: len(app.seen) == 9 and sum(app.seen.values()) == 11 and len(app.received["/dead"]) == 1)
    first = app.batches["/orders"][0]
    assert first["pubsubname"] == "bus" and first["topic"] == "orders" and first["type"] == "com.dapr.event.sent.bulk"
    assert first["id"] and isinstance(first["metadata"], dict)
    entry = first["entries"][0]
    assert entry["contentType"] == "application/cloudevents+json" and entry["event"]["specversion"] == "1.0"
    assert entry["event"]["topic"] == "orders" and isinstance(entry["metadata"], dict)
    # 7 messages and 2 offered again (answered RETRY, and without a status), at most 3 a batch
    sizes = app.sizes("/orders")
    assert sizes[:2] == [3, 3] and max(sizes) <= 3 and sum(sizes) == 9
    assert app.sizes("/few") == [2]  # never full: sent when maxAwaitDurationMs ran out
    counts = {app.number[event_id]: n for event_id, n in app.seen.items()}
    assert counts == {0: 1, 1: 2, 2: 1, 3: 2, 4: 1, 5: 1, 6: 1, 10: 1, 11: 1}  # RETRY and MISSING twice
    assert [e["data"] for e in app.received["/dead"]] == [{"n": 2, "answer": "DROP"}]


class BulkCallback(dapr_cb_grpc.AppCallbackServicer, dapr_cb_grpc.AppCallbackAlphaServicer):
    """A Dapr gRPC app listing one bulk subscription; entries answered RETRY the first time when
    their data is ``retry``, else SUCCESS."""

    def __init__(self) -> None:
        self.batches: list[Any] = []
        self.singles: list[bytes] = []
        self.seen: Counter[bytes] = Counter()

    async def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        bulk = dapr_cb.BulkSubscribeConfig(enabled=True, max_messages_count=4, max_await_duration_ms=300)
        subscription = dapr_cb.TopicSubscription(pubsub_name="bus", topic="g", bulk_subscribe=bulk)
        subscription.routes.default = "/g"
        return dapr_cb.ListTopicSubscriptionsResponse(subscriptions=[subscription])

    async def OnTopicEvent(self, request: Any, context: Any) -> Any:
        self.singles.append(request.data)
        return dapr_cb.TopicEventResponse(status=dapr_cb.TopicEventResponse.SUCCESS)

    async def OnBulkTopicEventAlpha1(self, request: Any, context: Any) -> Any:
        self.batches.append(request)
        statuses = []
        for entry in request.entries:
            data = entry.cloud_event.data
            self.seen[data] += 1
            retry = b"retry" in data and self.seen[data] == 1
            status = dapr_cb.TopicEventResponse.RETRY if retry else dapr_cb.TopicEventResponse.SUCCESS
            statuses.append(dapr_cb.TopicEventBulkResponseEntry(entry_id=entry.entry_id, status=status))
        return dapr_cb.TopicEventBulkResponse(statuses=statuses)


async def run_grpc_app(tmp_path: Path, callback: Any, *, alpha: bool, datas: list[Any]) -> None:
    app_port = free_port()
    server = grpc.aio.server()
    dapr_cb_grpc.add_AppCallbackServicer_to_server(callback, server)
    if alpha:
        dapr_cb_grpc.add_AppCallbackAlphaServicer_to_server(callback, server)
    server.add_insecure_port(f"127.0.0.1:{app_port}")
    await server.start()
    config = config_for(tmp_path, app_callback_address=f"127.0.0.1:{app_port}", app_callback_protocol="dapr")
    try:
        async with Runtime(config) as runtime:
            await listed(runtime)
            await bulk_publish(runtime, "g", datas)
            await wait_for(lambda: sum(callback.seen.values()) + len(callback.singles) >= len(datas) + alpha)
    finally:
        await server.stop(None)


async def test_a_grpc_app_gets_on_bulk_topic_event_alpha1_batches_with_per_entry_retry(tmp_path: Path) -> None:
    callback = BulkCallback()
    await run_grpc_app(tmp_path, callback, alpha=True, datas=["a", "retry", "b", "c", "d"])
    first = callback.batches[0]
    assert (first.topic, first.pubsub_name, first.path, first.type) == ("g", "bus", "/g", "com.dapr.event.sent.bulk")
    sizes = [len(batch.entries) for batch in callback.batches]
    assert sizes[0] == 4 and max(sizes) <= 4 and sum(sizes) == 6  # the entry answered RETRY came back
    assert first.entries[0].cloud_event.data == b'"a"' and first.entries[0].cloud_event.spec_version == "1.0"
    assert callback.seen == {b'"a"': 1, b'"retry"': 2, b'"b"': 1, b'"c"': 1, b'"d"': 1}
    assert callback.singles == []


async def test_a_grpc_app_without_the_alpha_service_gets_each_event_by_on_topic_event(tmp_path: Path) -> None:
    callback = BulkCallback()
    await run_grpc_app(tmp_path, callback, alpha=False, datas=["a", "b", "c"])
    assert sorted(callback.singles) == [b'"a"', b'"b"', b'"c"'] and callback.batches == []


async def test_bulk_subscribe_round_trip_on_redis(tmp_path: Path) -> None:
    require("redis")
    topic = f"bulk-{uuid.uuid4().hex[:8]}"
    bulk = {"enabled": True, "maxMessagesCount": 5, "maxAwaitDurationMs": 200}
    app = BulkApp([{"pubsubname": "bus", "topic": topic, "route": "/r", "bulkSubscribe": bulk}])
    config = config_for(tmp_path, "redis", app_protocol="http", app_port=app.port)
    async with app.serving(), Runtime(config) as runtime:
        await listed(runtime)
        await bulk_publish(runtime, topic, [{"n": i, "answer": "RETRY" if i == 3 else "SUCCESS"} for i in range(8)])
        await wait_for(lambda: len(app.seen) == 8 and sum(app.seen.values()) == 9)
    assert all(size <= 5 for size in app.sizes("/r"))
    assert sorted(app.seen.values()) == [1] * 7 + [2]


class FailingFirstBulkApp(BulkApp):
    """Answers its first batch 503 (recorded, not counted as seen), the others as :class:`BulkApp`."""

    async def _event(self, request: web.Request) -> web.Response:
        if not self.batches:
            self.batches.setdefault(request.path, []).append(json.loads(await request.read()))
            return web.Response(status=503)
        return await super()._event(request)


async def test_an_inbound_policy_retries_a_failed_batch_then_only_its_retry_entries(tmp_path: Path) -> None:
    """maxDeliveryAttempts 1: without the pub/sub's inbound policy the 503 would drop all three."""
    bulk = {"enabled": True, "maxMessagesCount": 3, "maxAwaitDurationMs": 200}
    subscription = {"pubsubname": "bus", "topic": "o", "route": "/o", "bulkSubscribe": bulk}
    app = FailingFirstBulkApp([{**subscription, "metadata": {"maxDeliveryAttempts": "1"}}])
    retries = {"three": {"policy": "constant", "duration": "10ms", "maxRetries": 3}}
    spec = parse_resiliency(
        {"policies": {"retries": retries}, "targets": {"components": {"bus": {"inbound": {"retry": "three"}}}}},
        "resiliency",
    )
    config = config_for(tmp_path, app_protocol="http", app_port=app.port, resiliency=spec)
    answers = ["SUCCESS", "RETRY", "SUCCESS"]
    async with app.serving(), Runtime(config) as runtime:
        await listed(runtime)
        await bulk_publish(runtime, "o", [{"n": i, "answer": a} for i, a in enumerate(answers)])
        await wait_for(lambda: sum(app.seen.values()) == 4)
    assert app.sizes("/o") == [3, 3, 1]  # the 503, the batch again, then only the entry answered RETRY
    assert {app.number[event_id]: n for event_id, n in app.seen.items()} == {0: 1, 1: 2, 2: 1}


class BreakingBulkCallback(BulkCallback):
    """Fails its first ``failures`` OnBulkTopicEventAlpha1 calls with UNAVAILABLE; lists the
    subscription with maxDeliveryAttempts 10."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    async def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        listing = await super().ListTopicSubscriptions(request, context)
        listing.subscriptions[0].metadata["maxDeliveryAttempts"] = "10"
        return listing

    async def OnBulkTopicEventAlpha1(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return await super().OnBulkTopicEventAlpha1(request, context)


async def test_an_inbound_circuit_breaker_opens_on_failed_grpc_batches(tmp_path: Path) -> None:
    """Two failed OnBulkTopicEventAlpha1 calls open the pub/sub's inbound breaker: the app is not
    called while it is open; once half-open, the batch goes through and closes it."""
    breakers = {"twoStrikes": {"maxRequests": 1, "timeout": "1s", "trip": "consecutiveFailures >= 2"}}
    targets = {"components": {"bus": {"inbound": {"circuitBreaker": "twoStrikes"}}}}
    spec = parse_resiliency({"policies": {"circuitBreakers": breakers}, "targets": targets}, "resiliency")
    callback = BreakingBulkCallback(failures=2)
    app_port = free_port()
    server = grpc.aio.server()
    dapr_cb_grpc.add_AppCallbackServicer_to_server(callback, server)
    dapr_cb_grpc.add_AppCallbackAlphaServicer_to_server(callback, server)
    server.add_insecure_port(f"127.0.0.1:{app_port}")
    await server.start()
    config = config_for(
        tmp_path, app_callback_address=f"127.0.0.1:{app_port}", app_callback_protocol="dapr", resiliency=spec
    )
    try:
        async with Runtime(config) as runtime:
            await listed(runtime)
            assert runtime.resiliency is not None
            policy = runtime.resiliency.inbound("bus")
            assert policy is not None and policy.breaker is not None
            await bulk_publish(runtime, "g", ["a", "b"])
            await wait_for(lambda: policy.breaker is not None and policy.breaker.state is State.OPEN)
            assert callback.calls == 2  # opened by the two failures; while open, no call reaches the app
            await wait_for(lambda: sum(callback.seen.values()) == 2)
            # the app counted the batch before the runtime read its answer: the success closes it
            await wait_for(lambda: policy.breaker is not None and policy.breaker.state is State.CLOSED)
    finally:
        await server.stop(None)
    # each event answered once (in one batch, or two when the broker handed them out apart)
    assert callback.seen == {b'"a"': 1, b'"b"': 1} and callback.singles == []
