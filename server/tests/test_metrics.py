"""Prometheus metrics: /metrics on the HTTP port, scraped after known traffic on both gRPC transports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import free_port

from layotto.client import Message, RuntimeClient, SubscriberApp, TopicStatus
from layotto.proto.dapr.runtime.v1 import configuration_pb2 as dapr_config
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, embedded_defaults
from layotto.server.components.base import ConfigError
from layotto.server.config import RuntimeConfig, from_mapping

COMPLETED = "dapr_grpc_io_server_completed_rpcs"
LATENCY = "dapr_grpc_io_server_server_latency"


def config(tmp_path: Path, transport: str = "grpcio", **overrides: Any) -> RuntimeConfig:
    return embedded_defaults().with_overrides(
        app_id="metered",
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        grpc_transport=transport,
        **overrides,
    )


@pytest.fixture(params=["grpcio", "native"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    started = Runtime(config(tmp_path, request.param, api_token="tok"))
    await started.start()
    yield started
    await started.stop(grace=1)


async def scrape(runtime: Runtime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (sample name, sorted labels) -> value."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{runtime.http_port}/metrics") as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        text = await answer.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def rpc(method: str, status: str) -> tuple[tuple[str, str], ...]:
    return (("app_id", "metered"), ("grpc_server_method", method), ("grpc_server_status", status))


async def test_every_call_is_counted_by_method_and_status(runtime: Runtime) -> None:
    token = (("dapr-api-token", "tok"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
        for _ in range(3):
            await layotto.SayHello(pb.SayHelloRequest(service_name="helloworld"), metadata=token)
        for metadata in ((), token):  # refused by the token check, then by the request check
            with pytest.raises(grpc.aio.AioRpcError):
                await layotto.GetState(pb.GetStateRequest(store_name="nope", key="k"), metadata=metadata)
        request = dapr_config.SubscribeConfigurationRequest(store_name="in-memory", keys=["f"])
        with pytest.raises(grpc.aio.AioRpcError):  # a server stream without the token
            await dapr.SubscribeConfiguration(request, timeout=5).read()
        bad_initial = pb.SubscribeTopicEventsRequest(initial_request=pb.SubscribeTopicEventsRequestInitial(topic="t"))
        with pytest.raises(grpc.aio.AioRpcError):  # a bidi stream refused for its missing pubsub_name
            await layotto.SubscribeTopicEvents(iter([bad_initial]), metadata=token, timeout=5).read()
    samples = await scrape(runtime)
    counts = {labels: value for (name, labels), value in samples.items() if name == COMPLETED + "_total"}
    assert counts == {
        rpc("/spec.proto.runtime.v1.Runtime/SayHello", "OK"): 3,
        rpc("/spec.proto.runtime.v1.Runtime/GetState", "UNAUTHENTICATED"): 1,
        rpc("/spec.proto.runtime.v1.Runtime/GetState", "INVALID_ARGUMENT"): 1,
        rpc("/dapr.proto.runtime.v1.Dapr/SubscribeConfiguration", "UNAUTHENTICATED"): 1,
        rpc("/spec.proto.runtime.v1.Runtime/SubscribeTopicEvents", "INVALID_ARGUMENT"): 1,
    }
    hello = rpc("/spec.proto.runtime.v1.Runtime/SayHello", "OK")
    assert samples[(LATENCY + "_count", hello)] == 3
    assert samples[(LATENCY + "_bucket", tuple(sorted((*hello, ("le", "+Inf")))))] == 3
    assert 0 < samples[(LATENCY + "_sum", hello)] < 3 * 10_000  # milliseconds
    assert any(name.startswith("process_") for name, _ in samples)  # prometheus-client's process collector


async def test_metrics_off_serves_no_endpoint(tmp_path: Path) -> None:
    runtime = Runtime(config(tmp_path, metrics_enabled=False))
    await runtime.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{runtime.http_port}/metrics") as got:
            assert got.status == 404
    finally:
        await runtime.stop(grace=1)
    assert runtime.metrics is None


def test_the_metrics_section_is_checked() -> None:
    assert from_mapping({"metrics": {"enabled": False}}).metrics_enabled is False
    assert from_mapping({}).metrics_enabled is True  # on by default, as in Dapr
    assert from_mapping({"metrics": {"enabled": False}}).to_dict()["metrics"] == {"enabled": False}
    with pytest.raises(ConfigError, match=r"metrics\.enabled: expected true or false, got 'yes'"):
        from_mapping({"metrics": {"enabled": "yes"}})
    with pytest.raises(ConfigError, match="metrics: expected a mapping with one key"):
        from_mapping({"metrics": {"port": 9090}})


def test_prometheus_client_is_imported_only_when_metrics_are_on(tmp_path: Path) -> None:
    code = f"""
import asyncio, sys
from layotto.server import Runtime, embedded_defaults

async def main():
    cfg = embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir={str(tmp_path)!r}, metrics_enabled=False)
    runtime = Runtime(cfg)
    await runtime.start()
    await runtime.stop(grace=0)

asyncio.run(main())
print("prometheus_client" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False", done.stderr


async def test_deliveries_are_counted_by_answer_and_dead_letter(tmp_path: Path) -> None:
    app, answers = SubscriberApp(), {"orders": [TopicStatus.RETRY, TopicStatus.SUCCESS]}
    dead_letters: asyncio.Queue[Message] = asyncio.Queue()

    @app.subscribe("in-memory", "orders")
    async def on_order(message: Message) -> TopicStatus:
        return answers["orders"].pop(0)

    @app.subscribe("in-memory", "doomed", dead_letter_topic="dead", max_delivery_attempts=2)
    async def on_doomed(message: Message) -> TopicStatus:
        return TopicStatus.RETRY

    @app.subscribe("in-memory", "dead")
    async def on_dead(message: Message) -> None:
        await dead_letters.put(message)

    port = free_port()
    async with app.serve(f"127.0.0.1:{port}"):
        runtime = Runtime(config(tmp_path, app_callback_address=f"127.0.0.1:{port}"))
        await runtime.start()
        try:
            assert runtime.app_subscriptions is not None
            await asyncio.wait_for(runtime.app_subscriptions.listed.wait(), 10)
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
                await client.pubsub.publish("in-memory", "orders", b"o")
                await client.pubsub.publish("in-memory", "doomed", b"d")
                assert (await asyncio.wait_for(dead_letters.get(), 10)).data == b"d"
            expected = {
                ("orders", "retry"): 1,
                ("orders", "success"): 1,
                ("doomed", "retry"): 2,
                ("doomed", "dead_letter"): 1,
                ("dead", "success"): 1,
            }
            for _ in range(100):  # the last counts land just after the dead letter arrives
                samples = await scrape(runtime)
                got = {
                    (dict(labels)["topic"], dict(labels)["process_status"]): value
                    for (name, labels), value in samples.items()
                    if name == "dapr_component_pubsub_ingress_count_total"
                }
                if got == expected:
                    break
                await asyncio.sleep(0.05)
            assert got == expected
        finally:
            await runtime.stop(grace=1)


def test_the_method_label_is_bounded() -> None:
    from layotto.server.metrics import MAX_METHOD_LABELS, OTHER_METHOD, RuntimeMetrics

    metrics = RuntimeMetrics("metered")  # gRPC proxying serves whatever method name a client sends
    for n in range(MAX_METHOD_LABELS + 10):
        metrics.record_rpc(f"/any.Service/M{n}", "OK", 0.0)
    metrics.record_rpc("/any.Service/M0", "OK", 0.0)  # a method counted before keeps its series
    counts = {
        sample.labels["grpc_server_method"]: sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
        if sample.name == f"{COMPLETED}_total"
    }
    assert len(counts) == MAX_METHOD_LABELS + 1
    assert (counts[OTHER_METHOD], counts["/any.Service/M0"]) == (10, 2)


def family(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, *drop: str) -> dict[Any, float]:
    """The samples named ``name``, by their labels but ``app_id`` and ``drop`` (a tuple of values)."""
    return {
        tuple(value for key, value in labels if key not in ("app_id", *drop)): value
        for (sample, labels), value in samples.items()
        if sample == name
    }


async def test_http_component_and_invocation_metrics_after_known_traffic(tmp_path: Path) -> None:
    app = SubscriberApp()

    @app.method("echo")
    async def echo(request: Any) -> bytes:
        return b"echo"

    port = free_port()
    async with app.serve(f"127.0.0.1:{port}"):
        runtime = Runtime(config(tmp_path, app_callback_address=f"127.0.0.1:{port}"))
        await runtime.start()
        try:
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
                await client.state.save("in-memory", "k1", b"v1")
                assert (await client.state.get("in-memory", "k1")).value == b"v1"
                await client.state.delete("in-memory", "k1")
                await client.pubsub.publish("in-memory", "orders", b"o")
                await client.pubsub.publish("in-memory", "orders", b"o")
                for _ in range(2):
                    assert (await client.invoke("metered", "echo", b"x")).data == b"echo"
                with pytest.raises(Exception):
                    await client.invoke("ghost", "echo", b"x")
                with pytest.raises(Exception):  # the app's own error: counted with the status the caller got
                    await client.invoke("metered", "unserved", b"x")
            http = f"http://127.0.0.1:{runtime.http_port}"
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{http}/v1.0/state/in-memory", json=[{"key": "h", "value": 1}]) as answer:
                    assert answer.status == 204
                stale = [{"key": "h", "value": 2, "etag": "999"}]
                async with session.post(f"{http}/v1.0/state/in-memory", json=stale) as answer:
                    assert answer.status == 409
                for key in ("h", "missing"):
                    async with session.get(f"{http}/v1.0/state/in-memory/{key}") as answer:
                        assert answer.status in (200, 204)
                async with session.get(f"{http}/no/such/path") as answer:
                    assert answer.status == 404
                async with session.request("PROPFIND", f"{http}/v1.0/metadata") as answer:
                    assert answer.status == 405
            samples = await scrape(runtime)
        finally:
            await runtime.stop(grace=1)
    assert family(samples, "dapr_http_server_request_count_total") == {
        ("POST", "/v1.0/state/{store}", "204"): 1,
        ("POST", "/v1.0/state/{store}", "409"): 1,
        ("GET", "/v1.0/state/{store}/{key}", "200"): 1,
        ("GET", "/v1.0/state/{store}/{key}", "204"): 1,
        ("GET", "other", "404"): 1,  # no route: never the raw path
        ("other", "other", "405"): 1,  # a method nobody serves
    }
    assert family(samples, "dapr_http_server_latency_count") == family(samples, "dapr_http_server_request_count_total")
    assert family(samples, "dapr_component_state_count_total") == {
        ("in-memory", "set", "true"): 2,  # SaveState, then the HTTP API's save
        ("in-memory", "set", "false"): 1,  # the stale etag
        ("in-memory", "get", "true"): 3,
        ("in-memory", "delete", "true"): 1,
    }
    assert family(samples, "dapr_component_state_latencies_count") == family(
        samples, "dapr_component_state_count_total"
    )
    assert family(samples, "dapr_component_pubsub_egress_count_total") == {("in-memory", "true", "orders"): 2}
    assert family(samples, "dapr_runtime_service_invocation_req_sent_total") == {("metered",): 3, ("ghost",): 1}
    answered = {("metered", "OK"): 2, ("metered", "UNIMPLEMENTED"): 1, ("ghost", "NOT_FOUND"): 1}
    assert family(samples, "dapr_runtime_service_invocation_res_recv_total") == answered
    assert family(samples, "dapr_runtime_service_invocation_res_recv_latency_ms_count") == answered


def test_client_chosen_labels_are_bounded() -> None:
    from layotto.server.metrics_ops import OTHER, BoundedLabel

    topics = BoundedLabel(2)
    assert [topics(t) for t in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]


async def test_a_component_rebuilt_live_is_measured_too(tmp_path: Path) -> None:
    runtime = Runtime(config(tmp_path))
    await runtime.start()
    try:
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
            await client.state.get("sqlite", "k")
            await runtime.reconfigurer.apply_metadata("state", "sqlite", {"tableName": "state_rebuilt"})
            await client.state.get("sqlite", "k")  # served by the new instance
        samples = await scrape(runtime)
    finally:
        await runtime.stop(grace=1)
    assert family(samples, "dapr_component_state_count_total") == {("sqlite", "get", "true"): 2}


async def test_the_metrics_interceptor_does_the_shutdown_gates_work(runtime: Runtime) -> None:
    """With nothing between them, the metrics interceptor counts the calls in flight for the gate and
    refuses new ones while it drains (health checks excepted), each counted with its status."""
    store = runtime.components.find("state", "in-memory", "name")
    entered, release = asyncio.Event(), asyncio.Event()
    in_flight_seen: list[int] = []

    async def held_get(key: str) -> None:
        in_flight_seen.append(runtime._gate.in_flight)
        entered.set()
        await release.wait()

    store.get = held_get  # type: ignore[method-assign]
    token = (("dapr-api-token", "tok"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        layotto = runtime_pb2_grpc.RuntimeStub(channel)
        held = asyncio.ensure_future(
            layotto.GetState(pb.GetStateRequest(store_name="in-memory", key="k"), metadata=token, timeout=10)
        )
        await asyncio.wait_for(entered.wait(), 10)
        runtime._gate.draining = True
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await layotto.SayHello(pb.SayHelloRequest(service_name="helloworld"), metadata=token)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in str(
                refused.value.details()
            )
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)  # still answered
            assert runtime._gate.in_flight == 1
            release.set()
            await held
        finally:
            runtime._gate.draining = False
    assert in_flight_seen == [1] and runtime._gate.in_flight == 0
    counts = {
        labels: value for (name, labels), value in (await scrape(runtime)).items() if name == COMPLETED + "_total"
    }
    assert counts[rpc("/spec.proto.runtime.v1.Runtime/SayHello", "UNAVAILABLE")] == 1
    assert counts[rpc("/spec.proto.runtime.v1.Runtime/GetState", "OK")] == 1


async def test_a_component_operation_is_counted_in_flight_and_measured_once_when_nested() -> None:
    """The component metrics keep track_calls' in-flight count in their own wrapper: every call,
    nested ones too, is in flight while it runs; a nested one (a bulk_get made of gets) is measured once."""
    from layotto.server.components.inflight import track_calls
    from layotto.server.metrics import RuntimeMetrics

    seen: list[int] = []

    class Store:
        name = "s"

        async def get(self, key: str) -> str:
            seen.append(counter.in_flight)
            if key == "bad":
                raise KeyError(key)
            return key

        async def bulk_get(self, keys: list[str]) -> list[str]:
            return [await self.get(key) for key in keys]

    store = Store()
    counter = track_calls(store)
    metrics = RuntimeMetrics("a")
    metrics.instrument_component("state", store)
    assert await store.get("k") == "k"
    assert await store.bulk_get(["x", "y"]) == ["x", "y"]
    with pytest.raises(KeyError):
        await store.get("bad")
    assert seen == [1, 2, 2, 1] and counter.in_flight == 0
    counts = {
        (sample.labels["operation"], sample.labels["success"]): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
        if sample.name == "dapr_component_state_count_total"
    }
    assert counts == {("get", "true"): 1, ("bulk_get", "true"): 1, ("get", "false"): 1}
