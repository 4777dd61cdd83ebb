"""The runtime on each gRPC transport (grpc.aio and pygrpc-native), and how ``grpc_transport`` picks one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_helpers import start_server

from layotto.proto.dapr.runtime.v1 import configuration_pb2 as dapr_config
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import state_pb2 as dapr_state
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, embedded_defaults
from layotto.server.cli import main
from layotto.server.components.base import ConfigError
from layotto.server.config import RuntimeConfig, load
from layotto.server.transport import add_services, build_server

TRANSPORTS = ["grpcio", "native"]
REFUSED_BY_NATIVE = {"grpc.max_connection_idle_ms": 60_000}  # grpc.aio closes idle connections; native cannot


def config(tmp_path: Path, transport: str, **overrides: Any) -> RuntimeConfig:
    return embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        grpc_transport=transport,
        **overrides,
    )


@pytest.fixture(params=TRANSPORTS)
async def runtime_on(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(config(tmp_path, request.param))
    await runtime.start()
    assert runtime.grpc_transport == request.param
    yield runtime
    await runtime.stop(grace=1)


@pytest.fixture
async def channel(runtime_on: Runtime) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime_on.grpc_port}") as opened:
        yield opened


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    details = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    assert status.code == error.code().value[0] and status.details[0].Unpack(info)
    return info


async def test_unary_calls_of_both_apis(channel: grpc.aio.Channel) -> None:
    layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
    item = pb.StateItem(key="k", value=b"\x00v", metadata={"contentType": "application/octet-stream"})
    await layotto.SaveState(pb.SaveStateRequest(store_name="in-memory", states=[item]))
    got = await layotto.GetState(pb.GetStateRequest(store_name="in-memory", key="k"))
    assert got.data == b"\x00v" and got.etag
    from_dapr = await dapr.GetState(dapr_state.GetStateRequest(store_name="in-memory", key="k"))
    assert (from_dapr.data, from_dapr.etag) == (b"\x00v", got.etag)


async def test_status_details_reach_the_client_in_trailing_metadata(channel: grpc.aio.Channel) -> None:
    layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
    for call in (
        layotto.GetState(pb.GetStateRequest(store_name="redis", key="k")),
        dapr.GetState(dapr_state.GetStateRequest(store_name="redis", key="k")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("store_name: state store 'redis' is not found")
        info = error_info(caught.value)
        assert (info.reason, info.metadata["field"]) == ("COMPONENT_NOT_FOUND", "store_name")


async def test_server_streaming_with_a_deadline(channel: grpc.aio.Channel) -> None:
    """Dapr's SubscribeConfiguration (unary request, streamed answers: native's fast path)."""
    layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
    stream = dapr.SubscribeConfiguration(
        dapr_config.SubscribeConfigurationRequest(store_name="in-memory", keys=["flag"]), timeout=1.5
    )
    first = await stream.read()
    assert first.id and not first.items
    save = pb.SaveConfigurationRequest(store_name="in-memory", items=[pb.ConfigurationItem(key="flag", content="on")])
    await layotto.SaveConfiguration(save)
    change = await stream.read()
    assert change.id == first.id and change.items["flag"].value == "on"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()  # nothing more changes: the deadline ends the stream
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await layotto.SaveConfiguration(save)  # the runtime serves on after the expired call


async def test_bidirectional_stream_and_its_error_details(channel: grpc.aio.Channel) -> None:
    """Layotto's SubscribeTopicEvents (pygrpc-native forwards it to its grpc.aio server)."""
    layotto = runtime_pb2_grpc.RuntimeStub(channel)
    acks: asyncio.Queue[pb.SubscribeTopicEventsRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.SubscribeTopicEventsRequest]:
        while (request := await acks.get()) is not None:
            yield request

    initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name="in-memory", topic="orders")
    await acks.put(pb.SubscribeTopicEventsRequest(initial_request=initial))
    stream = layotto.SubscribeTopicEvents(requests(), metadata=(("caller", "test"),), timeout=10)
    assert (await stream.read()).HasField("initial_response")
    await layotto.PublishEvent(pb.PublishEventRequest(pubsub_name="in-memory", topic="orders", data=b"o-1"))
    event = (await stream.read()).event_message
    assert event.data == b"o-1"
    ack = pb.SubscribeTopicEventsRequestProcessed(id=event.id)
    await acks.put(pb.SubscribeTopicEventsRequest(event_processed=ack))
    refused = layotto.SubscribeTopicEvents(
        iter([pb.SubscribeTopicEventsRequest(initial_request=pb.SubscribeTopicEventsRequestInitial(topic="x"))])
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refused.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["field"] == "initial_request.pubsub_name"
    await acks.put(None)
    stream.cancel()


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    listing = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {service.name async for answer in listing for service in answer.list_services_response.service}
    assert {"spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_graceful_stop_tells_watchers_and_refuses_new_calls(transport: str, tmp_path: Path) -> None:
    runtime = Runtime(config(tmp_path, transport))
    await runtime.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(runtime.stop(grace=1))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_in_flight_calls_finish_within_the_grace_and_new_ones_are_refused(transport: str) -> None:
    """The transport's own stop(grace), on raw-bytes handlers (no serializers)."""
    release, entered = asyncio.Event(), asyncio.Event()
    calls = 20  # answers given together just before the stop closes the connections (none may be lost)
    waiting: list[None] = []

    async def slow(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        waiting.append(None)
        if len(waiting) == calls:
            entered.set()
        await release.wait()
        return request[::-1]

    chosen = build_server(transport, options=[], interceptors=[])

    async def chat(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    methods = {"Echo": grpc.unary_unary_rpc_method_handler(slow), "Chat": grpc.stream_stream_rpc_method_handler(chat)}
    add_services(chosen.server, {"test.Slow": methods})  # Chat: pygrpc-native runs its grpc.aio server behind
    port = chosen.server.add_insecure_port("127.0.0.1:0")
    await chosen.server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary("/test.Slow/Echo")
        in_flight = asyncio.gather(*(echo(b"abc%d" % i, timeout=10) for i in range(calls)))
        await entered.wait()
        stopping = asyncio.create_task(chosen.server.stop(grace=10))
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await echo(b"late", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        assert await in_flight == [(b"abc%d" % i)[::-1] for i in range(calls)]
        await stopping


async def test_auto_picks_native_when_installed_and_able(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "layotto.server.transport")
    async with Runtime(config(tmp_path, "auto")) as runtime:
        assert runtime.grpc_transport == "native"
    assert "gRPC transport: native (grpc_transport: auto, pygrpc-native 0.5" in caplog.text


async def test_the_default_is_auto_and_serves_on_native(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LAYOTTO_GRPC_TRANSPORT", raising=False)
    caplog.set_level(logging.INFO, "layotto.server.transport")
    cfg = embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path)
    )
    assert cfg.grpc_transport == "auto"
    async with Runtime(cfg) as runtime:
        assert runtime.grpc_transport == "native"
    assert "gRPC transport: native (grpc_transport: auto, pygrpc-native 0.5" in caplog.text


async def test_auto_falls_back_to_grpcio_when_native_refuses_an_option(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "layotto.server.transport")
    async with Runtime(config(tmp_path, "auto", grpc_server_options=REFUSED_BY_NATIVE)) as runtime:
        assert runtime.grpc_transport == "grpcio"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            await runtime_pb2_grpc.RuntimeStub(channel).GetState(pb.GetStateRequest(store_name="in-memory", key="k"))
    [line] = [r.getMessage() for r in caplog.records if r.name == "layotto.server.transport"]
    assert line.startswith("gRPC transport: grpcio (grpc_transport: auto, pygrpc-native 0.5")
    assert "refuses the config: unsupported server option 'grpc.max_connection_idle_ms'" in line


async def test_native_refusing_an_option_is_a_config_error(tmp_path: Path) -> None:
    runtime = Runtime(config(tmp_path, "native", grpc_server_options=REFUSED_BY_NATIVE))
    with pytest.raises(ConfigError, match=r"^grpc_transport: native: pygrpc-native .* 'grpc.max_connection_idle_ms'"):
        await runtime.start()


async def test_auto_falls_back_when_native_is_not_importable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in sys.modules if name.startswith("pygrpc_native")]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import raises ImportError
    monkeypatch.setitem(sys.modules, "pygrpc_native", None)
    monkeypatch.setitem(sys.modules, "layotto.server.native_server", None)  # imported by an earlier test
    caplog.set_level(logging.INFO, "layotto.server.transport")
    async with Runtime(config(tmp_path, "auto")) as runtime:
        assert runtime.grpc_transport == "grpcio"
    assert "grpc_transport: auto, pygrpc-native is not installed (pip install 'layotto-server[native]')" in caplog.text
    with pytest.raises(ConfigError, match=r"^grpc_transport: native: pygrpc-native is not installed"):
        build_server("native", options=[], interceptors=[])


def test_an_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^grpc_transport: expected one of auto, native, grpcio, got 'h3'$"):
        build_server("h3", options=[], interceptors=[])


def test_layotto_serve_takes_the_flag_and_logs_the_transport(tmp_path: Path) -> None:
    server = start_server("--grpc-transport", "native", data_dir=tmp_path)
    with grpc.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    code, err = server.terminate()
    assert code == 0 and "gRPC transport: native (grpc_transport: native, pygrpc-native 0.5" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("grpc_transport: h2\n", "grpc_transport: expected one of auto, native, grpcio, got 'h2'"),
        ("grpc_server_options: [1]\n", "grpc_server_options: expected a mapping of grpc.* option names"),
        ("grpc_server_options: {keepalive: 1}\n", "grpc_server_options.keepalive: expected an option name starting"),
        ("grpc_server_options: {grpc.so_reuseport: 1}\n", "grpc_server_options.grpc.so_reuseport: set by the runtime"),
        (
            "grpc_server_options: {grpc.x: [1]}\n",
            "grpc_server_options.grpc.x: expected an integer or a string, got [1]",
        ),
        ("grpc_server_options: {grpc.x: true}\n", "grpc_server_options.grpc.x: expected an integer or a string"),
    ],
)
def test_bad_transport_keys_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: {expected}")):
        load(path)


def test_transport_from_file_flag_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("grpc_transport: auto\ngrpc_server_options: {grpc.keepalive_time_ms: 60000}\n")

    def printed(*args: str) -> dict[str, Any]:
        assert main(["serve", "--print-config", *args]) == 0
        return dict(json.loads(capsys.readouterr().out))

    monkeypatch.delenv("LAYOTTO_GRPC_TRANSPORT", raising=False)
    assert printed()["grpc_transport"] == "auto"
    monkeypatch.setenv("LAYOTTO_GRPC_TRANSPORT", "native")  # the default when set (how CI picks the transport)
    assert printed()["grpc_transport"] == "native"
    from_file = printed("-c", str(path))  # the file's key wins over the environment, the flag over both
    assert (from_file["grpc_transport"], from_file["grpc_server_options"]) == (
        "auto",
        {"grpc.keepalive_time_ms": 60000},
    )
    assert printed("-c", str(path), "--grpc-transport", "grpcio")["grpc_transport"] == "grpcio"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_streams_open_at_the_end_of_the_grace_end_unavailable(transport: str, tmp_path: Path) -> None:
    """What clients retry on: a Layotto (bidirectional, forwarded by pygrpc-native) and a Dapr
    (server-streaming, native) configuration subscription still open when the grace is over."""
    runtime = Runtime(config(tmp_path, transport))
    await runtime.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:

        async def subscribe() -> AsyncIterator[pb.SubscribeConfigurationRequest]:
            yield pb.SubscribeConfigurationRequest(store_name="in-memory", keys=["flag"])
            await asyncio.Event().wait()  # the request stream stays open, as the SDK's watch keeps it

        layotto = runtime_pb2_grpc.RuntimeStub(channel).SubscribeConfiguration(subscribe())
        dapr = dapr_pb2_grpc.DaprStub(channel).SubscribeConfiguration(
            dapr_config.SubscribeConfigurationRequest(store_name="in-memory", keys=["flag"])
        )
        assert (await dapr.read()).id
        await layotto.read()  # the items as they are: none
        await runtime.stop(grace=0.5)
        for stream in (layotto, dapr):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                while True:
                    if await stream.read() is grpc.aio.EOF:  # ended OK: the client would not retry
                        pytest.fail("a stream open at the end of the grace ended with OK, not UNAVAILABLE")
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value


class _Picker(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses ``/test.Pick/Refused`` by picking no handler; records which of its two entries ran."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        self.entries.append("intercept_service")
        return self._picked(details.method, await continuation(details))

    def pick(self, method: str, handler: Any) -> Any:
        self.entries.append("pick")
        return self._picked(method, handler)

    @staticmethod
    def _picked(method: str, handler: Any) -> Any:
        return None if method.endswith("/Refused") else handler


class _Counter(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """An interceptor without ``pick``: counts the calls it sees."""

    def __init__(self) -> None:
        self.calls = 0

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        self.calls += 1
        return await continuation(details)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("with_counter", [False, True])
async def test_interceptors_that_only_pick_a_handler_run_without_the_per_call_chain(
    transport: str, with_counter: bool
) -> None:
    """On native, a chain whose every interceptor has ``pick`` is run as picks (no HandlerCallDetails,
    no coroutine per interceptor); any other chain, and grpcio, run ``intercept_service``. Same answers."""
    picker, counter = _Picker(), _Counter()
    chosen = build_server(transport, options=[], interceptors=[picker, counter] if with_counter else [picker])

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request[::-1]

    methods = {name: grpc.unary_unary_rpc_method_handler(echo) for name in ("Echo", "Refused")}
    add_services(chosen.server, {"test.Pick": methods})
    port = chosen.server.add_insecure_port("127.0.0.1:0")
    await chosen.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await channel.unary_unary("/test.Pick/Echo")(b"abc", timeout=5) == b"cba"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary("/test.Pick/Refused")(b"abc", timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await chosen.server.stop(grace=None)
    shortcut = transport == "native" and not with_counter
    assert picker.entries == ["pick" if shortcut else "intercept_service"] * 2
    assert counter.calls == (2 if with_counter else 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_streams_whose_clients_stop_reading_hold_no_thread(transport: str) -> None:
    """More clients than the loop's default executor has threads open a server stream and stop reading:
    the runtime's own threads (``asyncio.to_thread``: files, secrets, crypto) still run, and the stop
    ends. (pygrpc-native 0.5.0 waited for each such client in a default-executor thread.)"""
    stalled = min(32, (os.cpu_count() or 1) + 4) + 1  # ThreadPoolExecutor's default size, and one more
    sent = 0

    async def flood(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            yield b"x" * 1_000_000  # more than the client's flow-control window in a few messages
            sent += 1

    chosen = build_server(transport, options=[], interceptors=[])
    add_services(chosen.server, {"test.Flood": {"Flood": grpc.unary_stream_rpc_method_handler(flood)}})
    port = chosen.server.add_insecure_port("127.0.0.1:0")
    await chosen.server.start()
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(stalled)]  # one connection each
    try:
        streams = [channel.unary_stream("/test.Flood/Flood")(b"") for channel in channels]
        for stream in streams:
            await stream.read()  # and no more
        for _ in range(1000):  # until every stream has tried to send past what its client took
            if sent >= 2 * stalled:
                break
            await asyncio.sleep(0.01)
        assert sent >= 2 * stalled
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "ran"), 10) == "ran"
        await asyncio.wait_for(chosen.server.stop(grace=0.2), 10)
    finally:
        for channel in channels:
            await channel.close()


async def test_native_forgets_calls_cancelled_before_their_handler_started() -> None:
    """A call whose cancel (the client's, or its deadline) reaches the loop before the call's task
    has run: pygrpc-native 0.5.0 kept it (and its request bytes) in the server's table of calls for
    good. Native only: grpc.aio has no such table."""
    started = 0

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        nonlocal started
        started += 1
        return request

    chosen = build_server("native", options=[], interceptors=[])
    add_services(chosen.server, {"test.Echo": {"Echo": grpc.unary_unary_rpc_method_handler(echo)}})
    port = chosen.server.add_insecure_port("127.0.0.1:0")
    await chosen.server.start()
    calls: dict[int, Any] = chosen.server._calls  # type: ignore[attr-defined]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo_call = channel.unary_unary("/test.Echo/Echo")
            assert await echo_call(b"warm", timeout=5) == b"warm"
            for _ in range(3):
                pending = [echo_call(b"x" * 100_000) for _ in range(20)]
                await asyncio.sleep(0)  # the calls go out (grpc's own threads send them)
                for call in pending:
                    call.cancel()
                time.sleep(0.15)  # noqa: ASYNC251 - the loop kept busy: the calls and their cancels reach it together
                await asyncio.sleep(0.05)  # the loop runs what arrived
            assert await echo_call(b"last", timeout=5) == b"last"
        assert started < 62, "no call was cancelled before it started: the test proves nothing"
        assert calls == {}
    finally:
        await chosen.server.stop(grace=None)
