"""Dapr's API token: DAPR_API_TOKEN (or ``api_token``) required on every call, APP_API_TOKEN sent to the app.

Against the in-process runtime on both gRPC transports: unary, server-streaming and bidirectional
calls of both wire APIs without, with a wrong and with the right ``dapr-api-token``; the HTTP API;
the exempt health checks; the SDK; and the app's callbacks (pub/sub, invocation over gRPC and HTTP).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_helpers import free_port

from layotto.client import Invocation, Message, RuntimeClient, SubscriberApp, Unauthenticated
from layotto.proto.dapr.runtime.v1 import configuration_pb2 as dapr_config
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import pubsub_pb2 as dapr_pubsub
from layotto.proto.dapr.runtime.v1 import state_pb2 as dapr_state
from layotto.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc, runtime_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server import Runtime, embedded_defaults
from layotto.server.config import RuntimeConfig, from_mapping
from layotto.server.masking import MASK, masked

TOKEN = "s3cret-token"
WRONG = (("dapr-api-token", "s3cret-tokeN"),)
RIGHT = (("dapr-api-token", TOKEN),)


def config(tmp_path: Path, transport: str = "grpcio", **overrides: Any) -> RuntimeConfig:
    return embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        grpc_transport=transport,
        **overrides,
    )


@pytest.fixture(autouse=True)
def no_tokens_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    monkeypatch.delenv("APP_API_TOKEN", raising=False)
    yield


@pytest.fixture(params=["grpcio", "native"])
async def guarded(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(config(tmp_path, request.param, api_token=TOKEN))
    await runtime.start()
    assert runtime.grpc_transport == request.param
    yield runtime
    await runtime.stop(grace=1)


@pytest.fixture
async def channel(guarded: Runtime) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{guarded.grpc_port}") as opened:
        yield opened


def assert_unauthenticated(error: grpc.aio.AioRpcError, missing: bool) -> None:
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert ("missing" if missing else "wrong") + " dapr-api-token metadata" in (error.details() or "")
    status = status_pb2.Status.FromString(dict(error.trailing_metadata() or ())["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "UNAUTHENTICATED"


async def test_unary_calls_of_both_apis_need_the_token(channel: grpc.aio.Channel) -> None:
    layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
    calls = [
        lambda metadata: layotto.SayHello(pb.SayHelloRequest(service_name="helloworld"), metadata=metadata),
        lambda metadata: dapr.GetState(dapr_state.GetStateRequest(store_name="in-memory", key="k"), metadata=metadata),
    ]
    for call in calls:
        for metadata, missing in (((), True), (WRONG, False)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(metadata)
            assert_unauthenticated(refused.value, missing)
    saved = pb.SaveStateRequest(store_name="in-memory", states=[pb.StateItem(key="k", value=b"v")])
    await layotto.SaveState(saved, metadata=RIGHT)
    assert (await calls[1](RIGHT)).data == b"v"
    assert (await calls[0](RIGHT)).hello


async def test_server_streaming_calls_need_the_token(channel: grpc.aio.Channel) -> None:
    dapr = dapr_pb2_grpc.DaprStub(channel)
    request = dapr_config.SubscribeConfigurationRequest(store_name="in-memory", keys=["flag"])
    for metadata, missing in (((), True), (WRONG, False)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await dapr.SubscribeConfiguration(request, metadata=metadata, timeout=5).read()
        assert_unauthenticated(refused.value, missing)
    stream = dapr.SubscribeConfiguration(request, metadata=RIGHT, timeout=5)
    assert (await stream.read()).id  # the subscription's first answer carries its id
    stream.cancel()
    file_request = pb.GetFileRequest(store_name="none", name="f")
    layotto_stream = runtime_pb2_grpc.RuntimeStub(channel).GetFile(file_request, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await layotto_stream.read()
    assert_unauthenticated(refused.value, missing=True)


async def test_bidirectional_streams_of_both_apis_need_the_token(channel: grpc.aio.Channel) -> None:
    layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
    initial = pb.SubscribeTopicEventsRequest(
        initial_request=pb.SubscribeTopicEventsRequestInitial(pubsub_name="in-memory", topic="orders")
    )
    dapr_initial = dapr_pubsub.SubscribeTopicEventsRequestAlpha1(
        initial_request=dapr_pubsub.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name="in-memory", topic="orders")
    )
    opens = [
        lambda metadata: layotto.SubscribeTopicEvents(iter([initial]), metadata=metadata, timeout=5),
        lambda metadata: dapr.SubscribeTopicEventsAlpha1(iter([dapr_initial]), metadata=metadata, timeout=5),
    ]
    for open_stream in opens:
        for metadata, missing in (((), True), (WRONG, False)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await open_stream(metadata).read()
            assert_unauthenticated(refused.value, missing)
        stream = open_stream(RIGHT)
        assert (await stream.read()).HasField("initial_response")
        stream.cancel()


async def test_health_is_exempt_and_reflection_is_not(channel: grpc.aio.Channel) -> None:
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await reflection.ServerReflectionInfo(iter([ask])).read()
    assert_unauthenticated(refused.value, missing=True)
    answer = await reflection.ServerReflectionInfo(iter([ask]), metadata=RIGHT).read()
    assert any(s.name == "spec.proto.runtime.v1.Runtime" for s in answer.list_services_response.service)


async def test_the_http_api_needs_the_header_and_health_is_exempt(guarded: Runtime) -> None:
    base = f"http://127.0.0.1:{guarded.http_port}"
    body = [{"key": "h", "value": "v"}]
    async with aiohttp.ClientSession() as http:
        for headers, detail in (({}, "missing"), ({"dapr-api-token": "nope"}, "wrong")):
            async with http.post(f"{base}/v1.0/state/in-memory", json=body, headers=headers) as refused:
                assert refused.status == 401
                answer = await refused.json()
            assert answer["errorCode"] == "ERR_UNAUTHENTICATED" and detail in answer["message"]
            assert answer["details"][0]["reason"] == "UNAUTHENTICATED"
            async with http.get(f"{base}/actuator/info", headers=headers) as info:
                assert info.status == 401
        async with http.post(f"{base}/v1.0/state/in-memory", json=body, headers={"dapr-api-token": TOKEN}) as saved:
            assert saved.status == 204
        async with http.get(f"{base}/v1.0/state/in-memory/h", headers={"dapr-api-token": TOKEN}) as got:
            assert await got.json() == "v"
        for path, status in (
            ("/v1.0/healthz", 204),
            ("/v1.0/healthz/outbound", 204),
            ("/actuator/health/liveness", 200),
            ("/actuator/health/readiness", 200),
        ):
            async with http.get(base + path) as health:
                assert health.status == status, path


async def test_the_sdk_sends_its_option_or_dapr_api_token(guarded: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{guarded.grpc_port}"
    async with RuntimeClient(address) as anonymous:
        with pytest.raises(Unauthenticated) as refused:
            await anonymous.state.save("in-memory", "k", b"v")
    assert refused.value.reason == "UNAUTHENTICATED" and refused.value.code == "UNAUTHENTICATED"
    async with RuntimeClient(address, api_token=TOKEN) as client:
        await client.state.save("in-memory", "k", b"v")
        async with client.pubsub.subscribe("in-memory", "sdk-topic") as subscription:  # a bidi stream
            await client.pubsub.publish("in-memory", "sdk-topic", b"e")
            assert (await asyncio.wait_for(anext(aiter(subscription)), 10)).data == b"e"
    monkeypatch.setenv("DAPR_API_TOKEN", TOKEN)
    async with RuntimeClient(address) as from_env:
        assert (await from_env.state.get("in-memory", "k")).value == b"v"


async def test_dapr_api_token_overrides_the_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_API_TOKEN", "from-env")
    runtime = Runtime(config(tmp_path, api_token="from-config"))
    await runtime.start()
    try:
        address = f"127.0.0.1:{runtime.grpc_port}"
        async with RuntimeClient(address, api_token="from-config") as stale:
            with pytest.raises(Unauthenticated):
                await stale.state.get("in-memory", "k")
        async with RuntimeClient(address, api_token="from-env") as client:
            assert (await client.state.get("in-memory", "k")).etag is None  # served: no such key
    finally:
        await runtime.stop(grace=1)


def test_the_config_key_is_read_and_masked_when_printed() -> None:
    loaded = from_mapping({"api_token": TOKEN})
    assert loaded.api_token == TOKEN
    assert masked(loaded.to_dict())["api_token"] == MASK


async def test_pub_sub_deliveries_and_invocations_carry_app_api_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app requires APP_API_TOKEN (SubscriberApp checks it): deliveries only arrive if the runtime sends it."""
    monkeypatch.setenv("APP_API_TOKEN", "app-secret")
    monkeypatch.setenv("DAPR_API_TOKEN", TOKEN)
    app, delivered, invoked = SubscriberApp(), asyncio.Queue[Message](), asyncio.Queue[Invocation]()

    @app.subscribe("in-memory", "orders")
    async def on_order(message: Message) -> None:
        await delivered.put(message)

    @app.method("echo")
    async def echo(call: Invocation) -> bytes:
        await invoked.put(call)
        return call.data

    app_port = free_port()
    async with app.serve(f"127.0.0.1:{app_port}"):
        runtime = Runtime(
            config(tmp_path, app_id="me", app_callback_address=f"127.0.0.1:{app_port}", subscriptions_refresh_seconds=1)
        )
        await runtime.start()
        try:
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:  # DAPR_API_TOKEN
                assert runtime.app_subscriptions is not None
                await asyncio.wait_for(runtime.app_subscriptions.listed.wait(), 10)
                await client.pubsub.publish("in-memory", "orders", b"o-1")
                assert (await asyncio.wait_for(delivered.get(), 10)).data == b"o-1"
                answer = await client.invoke("me", "echo", b"hi")
                assert answer.data == b"hi"
            call = invoked.get_nowait()
            assert call.headers["dapr-api-token"] == "app-secret"  # the app's token, never the runtime's
        finally:
            await runtime.stop(grace=1)


async def test_a_subscriber_app_refuses_callbacks_without_app_api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_API_TOKEN", "app-secret")
    app = SubscriberApp()
    async with app.serve("127.0.0.1:0") as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = appcallback_pb2_grpc.AppCallbackStub(channel)
        event = appcallback_pb2.TopicEventRequest(id="1", pubsub_name="in-memory", topic="t")
        for metadata in ((), (("dapr-api-token", "other"),)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.OnTopicEvent(event, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = await stub.OnTopicEvent(event, metadata=(("dapr-api-token", "app-secret"),))
        assert answer is not None  # served (no route: the app's own answer, not a refusal)


@asynccontextmanager
async def header_recording_app(port: int) -> AsyncIterator[list[dict[str, str]]]:
    seen: list[dict[str, str]] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append({":path": request.path, **request.headers})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("app_token", ["app-secret", None])
async def test_an_http_app_gets_app_api_token_never_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_token: str | None
) -> None:
    if app_token is not None:
        monkeypatch.setenv("APP_API_TOKEN", app_token)
    app_port = free_port()
    runtime = Runtime(config(tmp_path, app_id="web", app_protocol="http", app_port=app_port, api_token=TOKEN))
    async with header_recording_app(app_port) as seen:
        await runtime.start()
        try:
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", api_token=TOKEN) as client:
                await client.invoke("web", "orders/1", b"x", verb="POST")
        finally:
            await runtime.stop(grace=1)
    # the invocation, and the runtime asking the app's GET /dapr/subscribe (pub/sub), carry the app's token
    assert "/orders/1" in [headers[":path"] for headers in seen], json.dumps(seen)
    assert [headers.get("dapr-api-token") for headers in seen] == [app_token] * len(seen), json.dumps(seen)
