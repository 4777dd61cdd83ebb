"""One trace from the SDK through a `layotto serve` process into Redis and PostgreSQL, in both
exporters (OTLP and SkyWalking), received by in-process collectors; and a SkyWalking
Python agent's app joining the runtime's trace through sw8."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import backends
import pytest
import yaml
from server_helpers import ServerProcess, start_server

from layotto.client import RuntimeClient
from layotto.tracing import Tracing, TracingSettings
from layotto.tracing.testing import OtlpReceiver, ReceivedSpan, SkyWalkingCollector

SERVER, CLIENT = 2, 3  # OTLP span kinds
RUNTIME_SERVICE, APP_SERVICE = "layotto-runtime", "shop-app"


@pytest.fixture
def receivers() -> Iterator[tuple[OtlpReceiver, SkyWalkingCollector]]:
    with OtlpReceiver() as otlp, SkyWalkingCollector() as oap:
        yield otlp, oap


@pytest.fixture
def runtime(tmp_path: Path, receivers: tuple[OtlpReceiver, SkyWalkingCollector]) -> Iterator[ServerProcess]:
    backends.require("redis")
    backends.require("postgresql")
    otlp, oap = receivers
    namespace = uuid.uuid4().hex[:8]
    config = {
        "tracing": {
            "exporters": ["otlp", "skywalking"],
            "otlp_endpoint": otlp.endpoint,
            "skywalking_address": oap.address,
            "service_name": RUNTIME_SERVICE,
        },
        "state": {
            "redis": {"type": "redis", "metadata": backends.state_metadata("redis", namespace)},
            "postgresql": {"type": "postgresql", "metadata": backends.state_metadata("postgresql", namespace)},
        },
    }
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(config))
    server = start_server("-c", str(path), data_dir=tmp_path)
    yield server
    code, stderr = server.terminate()
    assert code == 0, stderr


def one(spans: list[ReceivedSpan], **expected: Any) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in expected.items())]
    assert len(found) == 1, f"expected one span with {expected}, found {len(found)}"
    return found[0]


async def test_one_trace_from_the_sdk_through_the_runtime_into_redis_and_postgresql(
    runtime: ServerProcess, receivers: tuple[OtlpReceiver, SkyWalkingCollector]
) -> None:
    otlp, oap = receivers
    settings = TracingSettings(
        exporters=("otlp", "skywalking"),
        service_name=APP_SERVICE,
        otlp_endpoint=otlp.endpoint,
        skywalking_address=oap.address,
    )
    tracing = Tracing(settings)
    address = runtime.grpc_address
    try:
        async with RuntimeClient(address, interceptors=tracing.client_interceptors(address)) as client:
            await client.state.save("redis", "traced", "v")
            await client.state.get("postgresql", "traced")
        tracing.force_flush()
    finally:
        tracing.shutdown()

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans}
        return (
            any(n.startswith("redis ") for n in names)
            and any(n.startswith("postgresql ") for n in names)
            and (sum(1 for s in spans if s.kind == SERVER) >= 2)
        )

    spans = otlp.wait_for(complete)
    for method, system in (("SaveState", "redis"), ("GetState", "postgresql")):
        name = f"spec.proto.runtime.v1.Runtime/{method}"
        client_span = one(spans, name=name, kind=CLIENT, service=APP_SERVICE)
        server_span = one(spans, name=name, kind=SERVER, service=RUNTIME_SERVICE)
        assert server_span.trace_id == client_span.trace_id, f"{method}: one trace id across processes"
        assert server_span.parent_span_id == client_span.span_id, f"{method}: the server span is the client's child"
        backend = [s for s in spans if s.trace_id == client_span.trace_id and s.name.startswith(system)]
        assert backend, f"{method}: no {system} span in the trace"
        for span in backend:
            assert span.parent_span_id == server_span.span_id and span.kind == CLIENT
            assert span.attributes["db.system"] == system and span.attributes["server.address"]
        if system == "postgresql":
            assert any("SELECT" in str(s.attributes.get("db.query.text", "")) for s in backend)

    get_trace = one(spans, name="spec.proto.runtime.v1.Runtime/GetState", kind=CLIENT).trace_id
    segments = oap.wait_for(lambda items: len([s for s in items if s.traceId == get_trace]) >= 2)
    app_segment = next(s for s in segments if s.traceId == get_trace and s.service == APP_SERVICE)
    runtime_segment = next(s for s in segments if s.traceId == get_trace and s.service == RUNTIME_SERVICE)
    entry = next(s for s in runtime_segment.spans if s.spanId == 0)
    assert entry.spanType == 0 and entry.parentSpanId == -1  # Entry, first of its segment
    (ref,) = entry.refs
    client_sw = next(s for s in app_segment.spans if s.operationName.endswith("GetState"))
    assert ref.parentTraceSegmentId == app_segment.traceSegmentId and ref.parentSpanId == client_sw.spanId
    assert ref.parentService == APP_SERVICE and ref.networkAddressUsedAtPeer == address
    exits = [s for s in runtime_segment.spans if s.spanType == 1]
    assert exits and all(s.parentSpanId == 0 and s.componentId == 22 and s.peer for s in exits)


AGENT_APP = textwrap.dedent("""
    import asyncio, sys
    from skywalking import agent, config
    config.init(agent_collector_backend_services=sys.argv[2], agent_name="agent-app",
                agent_instance_name="agent-app-1", agent_meter_reporter_active=False,
                agent_log_reporter_active=False, agent_profile_active=False)
    agent.start()
    from layotto.client import RuntimeClient

    async def main():
        async with RuntimeClient(sys.argv[1]) as client:
            await client.state.save("redis", "from-agent", "v")

    asyncio.run(main())
    print("agent app done")  # the agent flushes its segments at exit
""")


def test_a_skywalking_agent_app_joins_the_runtimes_trace(
    runtime: ServerProcess, receivers: tuple[OtlpReceiver, SkyWalkingCollector]
) -> None:
    _, oap = receivers
    done = subprocess.run(
        [sys.executable, "-c", AGENT_APP, runtime.grpc_address, oap.address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr

    def both(items: list[Any]) -> bool:
        services = {s.service for s in items}
        return "agent-app" in services and RUNTIME_SERVICE in services

    segments = oap.wait_for(both)
    agent_segment = next(s for s in segments if s.service == "agent-app")
    agent_exit = next(s for s in agent_segment.spans if s.spanType == 1)
    runtime_segment = next(s for s in segments if s.service == RUNTIME_SERVICE and s.traceId == agent_segment.traceId)
    entry = next(s for s in runtime_segment.spans if s.spanId == 0)
    (ref,) = entry.refs
    assert ref.traceId == agent_segment.traceId, "the runtime reports the agent's own trace id"
    assert ref.parentTraceSegmentId == agent_segment.traceSegmentId and ref.parentSpanId == agent_exit.spanId
    assert ref.parentService == "agent-app" and ref.parentServiceInstance == "agent-app-1"
    assert any(s.spanType == 1 and s.componentId == 7 for s in runtime_segment.spans), "the Redis call is in it"


async def test_a_published_event_is_delivered_in_the_publishers_trace(tmp_path: Path) -> None:
    from layotto.client import Message, SubscriberApp
    from layotto.client.testing import test_runtime
    from layotto.server import RuntimeConfig
    from layotto.server.config import ComponentConfig

    received: list[str] = []
    app = SubscriberApp()

    @app.subscribe("bus", "orders")
    async def on_order(message: Message) -> None:
        received.append(message.text())

    with OtlpReceiver() as otlp:
        async with app.serve("127.0.0.1:0") as app_port:
            config = RuntimeConfig(
                components={"pubsub": {"bus": ComponentConfig("in-memory")}},
                app_callback_address=f"127.0.0.1:{app_port}",
                tracing=TracingSettings(exporters=("otlp",), otlp_endpoint=otlp.endpoint, service_name=RUNTIME_SERVICE),
            )
            async with test_runtime(config) as rt:
                assert rt.runtime.app_subscriptions is not None
                await rt.runtime.app_subscriptions.listed.wait()
                tracing = Tracing(
                    TracingSettings(service_name=APP_SERVICE, otlp_endpoint=otlp.endpoint, exporters=("otlp",))
                )
                async with RuntimeClient(rt.address, interceptors=tracing.client_interceptors(rt.address)) as client:
                    await client.pubsub.publish("bus", "orders", "order 7")
                tracing.shutdown()
                for _ in range(100):
                    if received:
                        break
                    await asyncio.sleep(0.05)
        spans = otlp.wait_for(lambda got: any(s.name.endswith("AppCallback/OnTopicEvent") for s in got))
    assert received == ["order 7"]
    publish = one(spans, name="spec.proto.runtime.v1.Runtime/PublishEvent", kind=SERVER)
    consumer = one(spans, name="orders process")
    callback = one(spans, name="spec.proto.runtime.v1.AppCallback/OnTopicEvent", kind=CLIENT)
    assert consumer.trace_id == callback.trace_id == publish.trace_id, "delivery continues the publisher's trace"
    assert consumer.parent_span_id == publish.span_id and callback.parent_span_id == consumer.span_id


async def test_a_streaming_subscription_is_one_traced_call() -> None:
    from layotto.client.testing import test_runtime
    from layotto.server import RuntimeConfig
    from layotto.server.config import ComponentConfig

    with OtlpReceiver() as otlp:
        settings = TracingSettings(exporters=("otlp",), otlp_endpoint=otlp.endpoint, service_name=RUNTIME_SERVICE)
        config = RuntimeConfig(components={"pubsub": {"bus": ComponentConfig("in-memory")}}, tracing=settings)
        async with test_runtime(config) as rt:
            tracing = Tracing(
                TracingSettings(exporters=("otlp",), otlp_endpoint=otlp.endpoint, service_name=APP_SERVICE)
            )
            async with RuntimeClient(rt.address, interceptors=tracing.client_interceptors(rt.address)) as client:
                async with client.pubsub.subscribe("bus", "streamed") as subscription:
                    await client.pubsub.publish("bus", "streamed", "hello")
                    message = await asyncio.wait_for(anext(subscription), 10)
                    await message.ack()
                await asyncio.sleep(0.2)  # the stream's client span ends once its status is read
            tracing.shutdown()
        name = "spec.proto.runtime.v1.Runtime/SubscribeTopicEvents"
        spans = otlp.wait_for(lambda got: sum(1 for s in got if s.name == name) >= 2)
    client_span = one(spans, name=name, kind=CLIENT)
    server_span = one(spans, name=name, kind=SERVER)
    assert server_span.trace_id == client_span.trace_id and server_span.parent_span_id == client_span.span_id


async def test_sqlite_statements_are_backend_spans_of_the_call(tmp_path: Path) -> None:
    """The statements run on the store's own thread, and still are children of the call's span."""
    with OtlpReceiver() as otlp:
        config = {
            "tracing": {"exporters": ["otlp"], "otlp_endpoint": otlp.endpoint, "service_name": RUNTIME_SERVICE},
            "state": {"sqlite": {"type": "sqlite"}},
        }
        path = tmp_path / "runtime.yaml"
        path.write_text(yaml.safe_dump(config))
        server = start_server("-c", str(path), data_dir=tmp_path)
        try:
            async with RuntimeClient(server.grpc_address) as client:
                await client.state.save("sqlite", "traced", "v")
                await client.state.get("sqlite", "traced")
        finally:
            code, stderr = server.terminate()
        assert code == 0, stderr

        def complete(spans: list[ReceivedSpan]) -> bool:
            names = {s.name for s in spans}
            return "sqlite INSERT" in names and "sqlite SELECT" in names

        spans = otlp.wait_for(complete)
    for method, operation in (("SaveState", "INSERT"), ("GetState", "SELECT")):
        call = one(spans, name=f"spec.proto.runtime.v1.Runtime/{method}", kind=SERVER)
        statements = [s for s in spans if s.parent_span_id == call.span_id]
        assert statements and all(s.kind == CLIENT and s.attributes["db.system"] == "sqlite" for s in statements)
        assert any(
            s.name == f"sqlite {operation}" and str(s.attributes["db.query.text"]).startswith(operation)
            for s in statements
        ), [s.name for s in statements]
        assert all(s.trace_id == call.trace_id for s in statements)
