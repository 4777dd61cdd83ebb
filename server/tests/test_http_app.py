"""Events delivered to an app that speaks only HTTP (``app_protocol: http``): programmatic
(``GET /dapr/subscribe``) and declared (Subscription manifests) subscriptions, routing rules in CEL,
the app's answers through the delivery engine's retries and dead-letter topics, an app that goes down
and comes back, and app health checks. One runtime in-process, an aiohttp app in-process; the
semantics on the in-memory broker, one round-trip on each real broker."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from backends import REAL_BROKERS, pubsub_metadata, require
from server_helpers import free_port

from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_cb
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc as dapr_cb_grpc
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, metadata_pb2
from layotto.server import Runtime, RuntimeConfig
from layotto.server.app_health import AppHealthSettings, parse_app_health
from layotto.server.components.base import ConfigError
from layotto.server.config import ComponentConfig, with_dapr_components
from layotto.server.http_app import app_status
from layotto.server.runtime import delivery
from layotto.server.runtime.delivery import DROP, RETRY, SUCCESS
from layotto.server.runtime.resiliency import parse_resiliency

Answer = tuple[int, Any]  # HTTP status, JSON body (None: empty body)


class FakeApp:
    """An HTTP app: ``subscriptions`` at /dapr/subscribe, each POST recorded by path and answered from
    ``answers[path]`` (a list consumed in order; its last answer repeats), 200 SUCCESS by default."""

    def __init__(self, subscriptions: Any = None, answers: dict[str, list[Answer]] | None = None) -> None:
        self.subscriptions = subscriptions
        self.answers = answers or {}
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.headers: list[dict[str, str]] = []
        self.healthy = True
        self.port = free_port()

    async def _subscribe(self, request: web.Request) -> web.Response:
        if self.subscriptions is None:
            return web.Response(status=404)
        return web.json_response(self.subscriptions)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def _event(self, request: web.Request) -> web.Response:
        path = request.path
        self.received[path].append(json.loads(await request.read()))
        self.headers.append(dict(request.headers))
        script = self.answers.get(path, [(200, {"status": "SUCCESS"})])
        status, body = script.pop(0) if len(script) > 1 else script[0]
        return web.Response(status=status, body=b"" if body is None else json.dumps(body).encode())

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeApp]:
        app = web.Application()
        app.router.add_get("/dapr/subscribe", self._subscribe)
        app.router.add_get("/healthz", self._health)
        app.router.add_post("/{path:.*}", self._event)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()

    def datas(self, path: str) -> list[Any]:
        return [event.get("data") for event in self.received[path]]


async def wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    for _ in range(int(seconds * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


def runtime_config(tmp_path: Path, app: FakeApp, broker: str = "in-memory", **overrides: Any) -> RuntimeConfig:
    return RuntimeConfig(
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_protocol="http",
        app_port=app.port,
        components={"pubsub": {"bus": ComponentConfig(broker, pubsub_metadata(broker))}},
        **overrides,
    )


async def publish(
    runtime: Runtime, topic: str, data: Any, content_type: str = "application/json", query: str = ""
) -> None:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    url = f"http://127.0.0.1:{runtime.http_port}/v1.0/publish/bus/{topic}{query}"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers={"Content-Type": content_type}) as r:
        assert r.status == 204, await r.text()


async def metadata(runtime: Runtime) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{runtime.http_port}/v1.0/metadata") as r:
        assert r.status == 200
        answer: dict[str, Any] = await r.json()
        return answer


async def listed(runtime: Runtime) -> None:
    assert runtime.app_subscriptions is not None
    await asyncio.wait_for(runtime.app_subscriptions.listed.wait(), 15)


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ROUTED = [
    {"pubsubname": "bus", "topic": "orders", "route": "/orders"},
    {
        "pubsubname": "bus",
        "topic": "things",
        "routes": {
            "rules": [
                {"match": 'event.type == "widget"', "path": "/widgets"},
                {"match": 'event.data.kind.startsWith("g") && !(event.source in ["blocked"])', "path": "/g"},
            ],
            "default": "/other",
        },
    },
    {"pubsubname": "bus", "topic": "bad", "routes": {"rules": [{"match": "event.type ==", "path": "/x"}]}},
    {"pubsubname": "bus", "topic": "nowhere"},  # no route: every event would be skipped, so it is refused
]


async def test_programmatic_subscriptions_route_by_rules_and_post_cloudevents_with_the_app_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("APP_API_TOKEN", "app-secret")
    app = FakeApp(ROUTED)
    widget = {"specversion": "1.0", "id": "w1", "source": "shop", "type": "widget", "data": {"kind": "w"}}
    widget["traceparent"] = TRACEPARENT
    async with app.serving(), Runtime(runtime_config(tmp_path, app)) as runtime:
        await listed(runtime)
        await publish(runtime, "orders", b"o1", "text/plain")
        await wait_for(lambda: len(app.received["/orders"]) == 1)
        await publish(runtime, "orders", b"\x00raw", "application/octet-stream", "?metadata.rawPayload=true")
        await publish(runtime, "things", widget, "application/cloudevents+json")
        await publish(runtime, "things", {"kind": "gear"})
        await publish(runtime, "things", {"kind": "bolt"})
        await wait_for(lambda: sum(len(v) for v in app.received.values()) == 5)
    order, raw = app.received["/orders"]
    assert order["data"] == "o1" and order["datacontenttype"] == "text/plain"
    assert order["topic"] == "orders" and order["pubsubname"] == "bus" and order["specversion"] == "1.0"
    assert raw["data_base64"] == base64.b64encode(b"\x00raw").decode() and "data" not in raw
    assert app.received["/widgets"][0]["id"] == "w1" and app.datas("/widgets") == [{"kind": "w"}]
    assert [h.get("traceparent") for h in app.headers].count(TRACEPARENT) == 1  # the widget's, passed on
    assert app.datas("/g") == [{"kind": "gear"}] and app.datas("/other") == [{"kind": "bolt"}]
    assert {h["Content-Type"] for h in app.headers} == {"application/cloudevents+json"}
    assert {h["dapr-api-token"] for h in app.headers} == {"app-secret"}
    refused = [r.getMessage() for r in caplog.records if "ignoring the app's subscription" in r.getMessage()]
    assert len(refused) == 2 and not any("\n" in line for line in refused), refused
    assert "/dapr/subscribe[2].routes.rules[0].match: cannot parse CEL expression 'event.type =='" in refused[0]
    assert "bus/nowhere: subscription.route: an HTTP app's subscription needs a route" in refused[1]


def manifests(directory: Path, app_id: str) -> Path:
    (directory / "subs.yaml").write_text(f"""
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: {{name: d1}}
spec: {{pubsubname: bus, topic: d1, route: /d1}}
scopes: [{app_id}]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {{name: d2}}
spec:
  pubsubname: bus
  topic: d2
  routes:
    rules:
    - {{match: 'event.type == "widget"', path: /widgets}}
    default: /d2
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: {{name: d3}}
spec: {{pubsubname: bus, topic: d3, route: /d3}}
scopes: [another-app]
""")
    return directory


async def test_declared_subscriptions_reach_an_http_app_in_scope_only(tmp_path: Path) -> None:
    app = FakeApp([{"pubsubname": "bus", "topic": "p1", "route": "/p1", "metadata": {"k": "v"}}])
    config = runtime_config(tmp_path, app)
    config = with_dapr_components(config.with_overrides(components_path=str(manifests(tmp_path, config.app_id))))
    widget = {"specversion": "1.0", "id": "w2", "source": "s", "type": "widget", "data": 1}
    async with app.serving(), Runtime(config) as runtime:
        await listed(runtime)
        assert len(runtime.topics) == 3  # d3 is another app's
        subscriptions = {s["topic"]: s for s in (await metadata(runtime))["subscriptions"]}
        assert sorted(subscriptions) == ["d1", "d2", "p1"]
        assert subscriptions["p1"]["type"] == "PROGRAMMATIC" and subscriptions["p1"]["metadata"] == {"k": "v"}
        assert subscriptions["d2"]["type"] == "DECLARATIVE"
        assert subscriptions["d2"]["rules"] == [
            {"match": 'event.type == "widget"', "path": "/widgets"},
            {"match": "", "path": "/d2"},
        ]
        await publish(runtime, "d1", {"n": 1})
        await publish(runtime, "d2", widget, "application/cloudevents+json")
        await publish(runtime, "d2", {"n": 2})
        await wait_for(lambda: sum(len(v) for v in app.received.values()) == 3)
    assert app.datas("/d1") == [{"n": 1}] and app.datas("/widgets") == [1] and app.datas("/d2") == [{"n": 2}]


class DaprCallback(dapr_cb_grpc.AppCallbackServicer):
    """A Dapr gRPC app with no ListTopicSubscriptions (UNIMPLEMENTED): only declared subscriptions."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def OnTopicEvent(self, request: Any, context: Any) -> Any:
        self.paths.append((request.topic, request.path))
        return dapr_cb.TopicEventResponse(status=dapr_cb.TopicEventResponse.SUCCESS)


async def test_declared_subscriptions_reach_a_grpc_app_with_the_rule_path(tmp_path: Path) -> None:
    app_port = free_port()
    config = RuntimeConfig(
        app_id="grpc-app",
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_callback_address=f"127.0.0.1:{app_port}",
        app_callback_protocol="dapr",
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
        components_path=str(manifests(tmp_path, "grpc-app")),
    )
    callback = DaprCallback()
    server = grpc.aio.server()
    dapr_cb_grpc.add_AppCallbackServicer_to_server(callback, server)
    server.add_insecure_port(f"127.0.0.1:{app_port}")
    await server.start()
    widget = {"specversion": "1.0", "id": "w3", "source": "s", "type": "widget", "data": 1}
    try:
        async with Runtime(with_dapr_components(config)) as runtime:
            await listed(runtime)
            await publish(runtime, "d2", widget, "application/cloudevents+json")
            await publish(runtime, "d2", {"n": 2})
            await publish(runtime, "d1", {"n": 1})
            await wait_for(lambda: len(callback.paths) == 3)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
                answer = await dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest())
    finally:
        await server.stop(None)
    assert sorted(callback.paths) == [("d1", "/d1"), ("d2", "/d2"), ("d2", "/widgets")]
    declared = metadata_pb2.PubsubSubscriptionType.DECLARATIVE
    assert [(s.topic, s.type, [r.path for r in s.rules.rules]) for s in answer.subscriptions] == [
        ("d1", declared, ["/d1"]),
        ("d2", declared, ["/widgets", "/d2"]),
    ]


async def test_retry_then_success_is_redelivered_and_drop_goes_to_the_dead_letter_topic(tmp_path: Path) -> None:
    subscriptions = [
        {"pubsubname": "bus", "topic": "flaky", "route": "/flaky"},
        {"pubsubname": "bus", "topic": "junk", "route": "/junk", "deadLetterTopic": "junk-dead"},
        {"pubsubname": "bus", "topic": "junk-dead", "route": "/dead"},
        {"pubsubname": "bus", "topic": "gone", "route": "/missing"},
    ]
    answers: dict[str, list[Answer]] = {
        "/flaky": [(200, {"status": "RETRY"}), (500, None), (200, {"status": "later"}), (200, None)],
        "/junk": [(200, {"status": "drop"})],
        "/missing": [(404, None)],
    }
    app = FakeApp(subscriptions, answers)
    async with app.serving(), Runtime(runtime_config(tmp_path, app)) as runtime:
        await listed(runtime)
        await publish(runtime, "flaky", {"n": 1})
        await publish(runtime, "junk", {"n": 2})
        await publish(runtime, "gone", {"n": 3})
        await wait_for(lambda: len(app.received["/flaky"]) == 4 and len(app.received["/dead"]) == 1)
        await asyncio.sleep(0.3)  # a redelivery would come within the first backoff (0.1 s)
    assert app.datas("/flaky") == [{"n": 1}] * 4  # RETRY, 500, an unknown status: retried; empty body: done
    assert app.datas("/junk") == [{"n": 2}] and app.datas("/dead") == [{"n": 2}]  # dropped once, dead-lettered
    assert app.datas("/missing") == [{"n": 3}]  # 404: dropped, not retried


async def test_an_inbound_resiliency_policy_retries_a_post_before_the_delivery_gives_up(tmp_path: Path) -> None:
    """maxDeliveryAttempts 1: without the component's inbound policy the first RETRY would drop it."""
    subscriptions = [{"pubsubname": "bus", "topic": "orders", "route": "/o", "metadata": {"maxDeliveryAttempts": "1"}}]
    app = FakeApp(subscriptions, {"/o": [(503, None), (200, {"status": "RETRY"}), (200, None)]})
    retries = {"three": {"policy": "constant", "duration": "10ms", "maxRetries": 3}}
    targets = {"components": {"bus": {"inbound": {"retry": "three"}}}}
    spec = parse_resiliency({"policies": {"retries": retries}, "targets": targets}, "resiliency")
    async with app.serving(), Runtime(runtime_config(tmp_path, app, resiliency=spec)) as runtime:
        await listed(runtime)
        await publish(runtime, "orders", {"n": 1})
        await wait_for(lambda: len(app.received["/o"]) == 3)
    assert app.datas("/o") == [{"n": 1}] * 3


async def test_an_app_down_then_up_gets_every_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "FIRST_BACKOFF_SECONDS", 0.01)  # 5 counted attempts would take 0.15 s
    app = FakeApp([{"pubsubname": "bus", "topic": "orders", "route": "/orders"}])
    async with Runtime(runtime_config(tmp_path, app)) as runtime:
        async with app.serving():
            await listed(runtime)
            await publish(runtime, "orders", {"n": 0})
            await wait_for(lambda: len(app.received["/orders"]) == 1)
        for n in (1, 2, 3):  # the app is down: held, not counted as attempts
            await publish(runtime, "orders", {"n": n})
        await asyncio.sleep(0.5)  # long past the engine's 5 attempts, had refusals counted
        async with app.serving():
            await wait_for(lambda: len(app.received["/orders"]) == 4)
    assert sorted(d["n"] for d in app.datas("/orders")) == [0, 1, 2, 3]


async def test_an_unhealthy_app_gets_no_events_until_it_is_healthy_again(tmp_path: Path) -> None:
    app = FakeApp([{"pubsubname": "bus", "topic": "orders", "route": "/orders"}])
    health = AppHealthSettings(enabled=True, probe_interval_seconds=0.05, probe_timeout_seconds=1, threshold=2)
    async with app.serving(), Runtime(runtime_config(tmp_path, app, app_health=health)) as runtime:
        await listed(runtime)
        keeper_health = runtime.app_subscriptions.health if runtime.app_subscriptions else None
        assert keeper_health is not None
        await wait_for(lambda: keeper_health.status == "healthy")
        app.healthy = False
        await wait_for(lambda: keeper_health.status == "unhealthy")
        assert (await metadata(runtime))["extended"]["appHealth"] == "unhealthy"
        await publish(runtime, "orders", {"n": 1})
        await asyncio.sleep(0.3)  # several probes later: still held
        assert app.received["/orders"] == []
        app.healthy = True
        await wait_for(lambda: app.datas("/orders") == [{"n": 1}])


class ListingDaprCallback(DaprCallback):
    async def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        rules = dapr_cb.TopicRoutes(
            rules=[dapr_cb.TopicRule(match='event.data.kind == "a"', path="/a")], default="/rest"
        )
        bad = dapr_cb.TopicRoutes(rules=[dapr_cb.TopicRule(match="event.data.kind ==", path="/x")])
        return dapr_cb.ListTopicSubscriptionsResponse(
            subscriptions=[
                dapr_cb.TopicSubscription(pubsub_name="bus", topic="r1", routes=rules),
                dapr_cb.TopicSubscription(pubsub_name="bus", topic="r2", routes=bad),
            ]
        )


async def test_a_grpc_apps_listed_routing_rules_choose_the_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app_port = free_port()
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_callback_address=f"127.0.0.1:{app_port}",
        app_callback_protocol="dapr",
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
    )
    callback = ListingDaprCallback()
    server = grpc.aio.server()
    dapr_cb_grpc.add_AppCallbackServicer_to_server(callback, server)
    server.add_insecure_port(f"127.0.0.1:{app_port}")
    await server.start()
    try:
        async with Runtime(config) as runtime:
            await listed(runtime)
            assert len(runtime.topics) == 1  # r2's rule does not parse: refused
            await publish(runtime, "r1", {"kind": "a"})
            await publish(runtime, "r1", {"kind": "b"})
            await wait_for(lambda: len(callback.paths) == 2)
    finally:
        await server.stop(None)
    assert sorted(callback.paths) == [("r1", "/a"), ("r1", "/rest")]
    refused = [r.getMessage() for r in caplog.records if "ignoring the app's subscription" in r.getMessage()]
    assert len(refused) == 1 and "subscriptions[1].routes.rules[0].match: cannot parse CEL" in refused[0]


class DaprHealth(dapr_cb_grpc.AppCallbackHealthCheckServicer):
    def __init__(self) -> None:
        self.healthy = True

    async def HealthCheck(self, request: Any, context: Any) -> Any:
        if not self.healthy:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not now")
        return dapr_cb.HealthCheckResponse()


async def test_an_unhealthy_grpc_app_gets_no_events_until_its_health_check_passes(tmp_path: Path) -> None:
    app_port = free_port()
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_callback_address=f"127.0.0.1:{app_port}",
        app_callback_protocol="dapr",
        app_health=AppHealthSettings(enabled=True, probe_interval_seconds=0.05, probe_timeout_seconds=1, threshold=1),
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
        components_path=str(manifests(tmp_path, "layotto")),
    )
    callback, health = DaprCallback(), DaprHealth()
    server = grpc.aio.server()
    dapr_cb_grpc.add_AppCallbackServicer_to_server(callback, server)
    dapr_cb_grpc.add_AppCallbackHealthCheckServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{app_port}")
    await server.start()
    try:
        async with Runtime(with_dapr_components(config)) as runtime:
            await listed(runtime)
            assert runtime.app_subscriptions is not None and runtime.app_subscriptions.health is not None
            app_health = runtime.app_subscriptions.health
            await wait_for(lambda: app_health.status == "healthy")
            health.healthy = False
            await wait_for(lambda: app_health.status == "unhealthy")
            await publish(runtime, "d1", {"n": 1})
            await asyncio.sleep(0.3)  # several probes later: still held
            assert callback.paths == []
            health.healthy = True
            await wait_for(lambda: callback.paths == [("d1", "/d1")])
    finally:
        await server.stop(None)


async def test_a_grpc_app_without_dapr_health_checks_is_healthy_while_it_answers(tmp_path: Path) -> None:
    from layotto.client import Message, SubscriberApp

    app, app_port, received = SubscriberApp(), free_port(), []

    @app.subscribe("bus", "orders")
    async def on_order(message: Message) -> None:
        received.append(message.text())

    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_callback_address=f"127.0.0.1:{app_port}",
        app_health=AppHealthSettings(enabled=True, probe_interval_seconds=0.05, threshold=1),
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
    )
    async with app.serve(f"127.0.0.1:{app_port}"), Runtime(config) as runtime:
        await listed(runtime)
        await publish(runtime, "orders", b"o1", "text/plain")
        await wait_for(lambda: received == ["o1"])
        assert (await metadata(runtime))["extended"]["appHealth"] == "healthy"


@pytest.mark.parametrize("broker", REAL_BROKERS)
async def test_an_http_app_gets_a_retried_event_on_a_real_broker(tmp_path: Path, broker: str) -> None:
    require(broker)
    topic = f"http-{uuid.uuid4().hex[:8]}"
    app = FakeApp(
        [{"pubsubname": "bus", "topic": topic, "route": "/in"}], {"/in": [(200, {"status": "RETRY"}), (200, None)]}
    )
    async with app.serving(), Runtime(runtime_config(tmp_path, app, broker)) as runtime:
        await listed(runtime)
        await asyncio.sleep(0.2)  # the broker subscription is live (MQTT and NATS do not keep earlier messages)
        await publish(runtime, topic, {"on": broker})
        await wait_for(lambda: len(app.received["/in"]) == 2)
    assert app.datas("/in") == [{"on": broker}] * 2


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b"", SUCCESS),
        (204, b"not json", SUCCESS),
        (200, b'{"status": "SUCCESS"}', SUCCESS),
        (200, b"{}", SUCCESS),
        (201, b'{"status": "retry"}', RETRY),
        (200, b'{"status": "DROP"}', DROP),
        (200, b'{"status": "MAYBE"}', RETRY),
        (404, b"", DROP),
        (500, b'{"status": "SUCCESS"}', RETRY),
        (302, b"", RETRY),
    ],
)
def test_the_apps_answers_as_dapr_reads_them(status: int, body: bytes, outcome: int) -> None:
    assert app_status(status, body) == outcome


def test_a_manifest_rule_that_does_not_parse_stops_start_up_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("""
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: bad}
spec:
  pubsubname: bus
  topic: t
  routes: {rules: [{match: 'event.type ==', path: /x}], default: /d}
""")
    with pytest.raises(ConfigError) as caught:
        with_dapr_components(RuntimeConfig(components_path=str(tmp_path)))
    message = str(caught.value)
    assert "\n" not in message and "bad.yaml" in message
    assert "spec.routes.rules[0].match: cannot parse CEL expression 'event.type =='" in message


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"enabled": "yes"}, "app_health.enabled: expected true or false"),
        ({"path": "healthz"}, "app_health.path: expected a URL path"),
        ({"path": "/ready\r\nX-Injected: 1"}, "app_health.path: expected a URL path"),
        ({"threshold": 0}, "app_health.threshold: expected an integer from 1"),
        ({"probe_interval_seconds": "5s"}, "app_health.probe_interval_seconds: expected a number of seconds"),
        ({"probe": 1}, "app_health.probe: unknown key"),
    ],
)
def test_app_health_settings_refuse_bad_values_naming_the_key(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_app_health(raw, "app_health")
    assert parse_app_health({"enabled": True}, "app_health") == AppHealthSettings(enabled=True)


logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
