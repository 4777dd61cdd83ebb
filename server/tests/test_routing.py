"""Routing tables, the services the runtime serves, and requests whose bytes are not the RPC's message.

Raw bytes go through a generic channel (no serializer), the way a broken or hostile client
would send them, for every call shape.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, empty_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from test_api import call_error, error_info

import layotto.proto
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server import Runtime
from layotto.server.api.adapter import RoutingError, check_routes, method_handlers
from layotto.server.api.services import (
    NOT_SERVED,
    RUNTIME_SERVICE,
    SERVED_SERVICES,
    SERVICE_NAMES,
    api_handlers,
)
from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.delivery import Topics
from layotto.server.runtime.secret_scopes import SecretPolicy
from layotto.tracing import TracingSettings
from layotto.tracing.testing import OtlpReceiver

GARBAGE = bytes.fromhex("0a03fffefd")  # field 1 (a string) holding invalid UTF-8


def all_services() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(layotto.proto.__path__, "layotto.proto."):
        if info.name.endswith("_pb2"):
            for service in importlib.import_module(info.name).DESCRIPTOR.services_by_name.values():
                found.add(service.full_name)
    return found


def handlers_of_an_empty_runtime() -> dict[str, Any]:
    return api_handlers(
        ComponentSet(),
        app_id="app",
        version="0",
        shutdown=lambda: None,
        topics=Topics(),
        max_publish_bytes=1024,
        secret_policy=SecretPolicy({}),
    )


# -- the tables ------------------------------------------------------------------------------


def test_every_service_of_the_contract_is_served_or_known_to_be_someone_elses() -> None:
    served = set(SERVICE_NAMES)
    assert served.isdisjoint(NOT_SERVED)
    assert served | NOT_SERVED == all_services()


def test_the_routing_tables_fit_the_descriptors_and_cover_every_rpc() -> None:
    handlers = handlers_of_an_empty_runtime()
    assert set(handlers) == set(SERVICE_NAMES)
    for service in SERVED_SERVICES:
        assert set(handlers[service.full_name]) == {m.name for m in service.methods}


async def save_state(request: Any, context: Any) -> Any:
    return None


async def subscribe(request: Any, context: Any) -> AsyncIterator[Any]:
    yield None


def test_a_table_entry_naming_no_rpc_is_refused() -> None:
    with pytest.raises(RoutingError, match=r"spec.proto.runtime.v1.Runtime has no RPC named SaveStat$"):
        method_handlers(RUNTIME_SERVICE, {"SaveState": save_state, "SaveStat": save_state})


@pytest.mark.parametrize(
    ("rpc", "handler", "shape"),
    [("SaveState", subscribe, "a coroutine function"), ("SubscribeTopicEvents", save_state, "an async generator")],
)
def test_a_handler_of_the_wrong_shape_is_refused(rpc: str, handler: Callable[..., Any], shape: str) -> None:
    with pytest.raises(RoutingError, match=f"Runtime/{rpc}: the handler .* is not {shape}"):
        check_routes(RUNTIME_SERVICE, {rpc: handler})


# -- every service of the contract answers -------------------------------------------------------


def raw_call(channel: grpc.aio.Channel, service: str, rpc: str) -> Any:
    """Calls ``rpc`` of ``service`` with a request of raw bytes, in the RPC's shape; returns the call."""
    descriptor = next(s for s in SERVED_SERVICES if s.full_name == service).methods_by_name[rpc]
    path = f"/{service}/{rpc}"
    shape = (descriptor.client_streaming, descriptor.server_streaming)
    if shape == (False, False):
        return channel.unary_unary(path)
    if shape == (False, True):
        return channel.unary_stream(path)
    if shape == (True, False):
        return channel.stream_unary(path)
    return channel.stream_stream(path)


async def outcome(call: Any) -> grpc.aio.AioRpcError:
    """The error a call ends with, reading a streamed response to its end."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    return caught.value


async def send(callable_: Any, service: str, rpc: str, *messages: bytes) -> grpc.aio.AioRpcError:
    descriptor = next(s for s in SERVED_SERVICES if s.full_name == service).methods_by_name[rpc]
    if descriptor.client_streaming:

        async def stream() -> AsyncIterator[bytes]:
            for message in messages:
                yield message

        return await outcome(callable_(stream()))
    return await outcome(callable_(messages[0]))


@pytest.fixture
async def channel(runtime: Runtime) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as opened:
        yield opened


#: served services with a handler for every RPC
FULLY_BUILT = {
    "spec.proto.runtime.v1.Runtime",
    "spec.proto.extension.v1.cryption.CryptionService",
    "spec.proto.extension.v1.delay_queue.DelayQueue",
    "spec.proto.runtime.v1.Lifecycle",
    "spec.proto.extension.v1.email.EmailService",
    "spec.proto.extension.v1.sms.SmsService",
    "spec.proto.extension.v1.phone.PhoneCallService",
    "spec.proto.extension.v1.s3.ObjectStorageService",
}
UNBUILT_CALLS = [
    ("dapr.proto.runtime.v1.Dapr", "SetBinaryFileAlpha1"),  # client streaming
    ("dapr.proto.runtime.v1.Dapr", "GetBinaryFileAlpha1"),  # server streaming
    ("dapr.proto.runtime.v1.Dapr", "SubscribeActorEventsAlpha1"),  # bidirectional
    ("dapr.proto.runtime.v1.Dapr", "RegisterActorTimer"),
]


def test_the_unbuilt_calls_cover_every_service_and_shape() -> None:
    served = {service for service, _ in UNBUILT_CALLS}
    assert served == set(SERVICE_NAMES) - FULLY_BUILT
    shapes = set()
    for service, rpc in UNBUILT_CALLS:
        method = next(s for s in SERVED_SERVICES if s.full_name == service).methods_by_name[rpc]
        shapes.add((method.client_streaming, method.server_streaming))
    assert len(shapes) == 4


@pytest.mark.parametrize(("service", "rpc"), UNBUILT_CALLS)
async def test_every_rpc_not_built_answers_unimplemented_naming_it(
    channel: grpc.aio.Channel, service: str, rpc: str
) -> None:
    error = await send(raw_call(channel, service, rpc), service, rpc, b"")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == f"{service}/{rpc} is not implemented by this runtime yet"
    assert error_info(error).reason == "RPC_NOT_IMPLEMENTED"


async def test_reflection_lists_every_served_service(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for answer in stub.ServerReflectionInfo(iter([request])):
        listed = {s.name for s in answer.list_services_response.service}
        break
    assert set(SERVICE_NAMES) <= listed


async def test_reflection_describes_the_error_details_every_error_carries(channel: grpc.aio.Channel) -> None:
    """grpcurl decodes an error's grpc-status-details-bin (the ErrorInfo's reason and field) by
    asking reflection for its types: without them it shows the details as bytes."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    for symbol, file in (
        ("google.rpc.ErrorInfo", "google/rpc/error_details.proto"),
        ("google.rpc.Status", "google/rpc/status.proto"),
    ):
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        async for answer in stub.ServerReflectionInfo(iter([request])):
            files = answer.file_descriptor_response.file_descriptor_proto
            break
        assert file in [descriptor_pb2.FileDescriptorProto.FromString(f).name for f in files], symbol


# -- undecodable requests ------------------------------------------------------------------------

MALFORMED_CALLS = [
    ("spec.proto.runtime.v1.Runtime", "GetState", "spec.proto.runtime.v1.GetStateRequest"),
    ("dapr.proto.runtime.v1.Dapr", "GetState", "dapr.proto.runtime.v1.GetStateRequest"),
    ("spec.proto.runtime.v1.Runtime", "SubscribeTopicEvents", "spec.proto.runtime.v1.SubscribeTopicEventsRequest"),
    (
        "dapr.proto.runtime.v1.Dapr",
        "SubscribeTopicEventsAlpha1",
        "dapr.proto.runtime.v1.SubscribeTopicEventsRequestAlpha1",
    ),
    ("spec.proto.runtime.v1.Runtime", "SubscribeConfiguration", "spec.proto.runtime.v1.SubscribeConfigurationRequest"),
    ("dapr.proto.runtime.v1.Dapr", "SubscribeConfiguration", "dapr.proto.runtime.v1.SubscribeConfigurationRequest"),
]


@pytest.mark.parametrize(("service", "rpc", "message_type"), MALFORMED_CALLS)
async def test_undecodable_bytes_answer_invalid_argument_naming_the_message_quietly(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, service: str, rpc: str, message_type: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="layotto")
    error = await send(raw_call(channel, service, rpc), service, rpc, GARBAGE)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"request: the bytes are not a valid {message_type} (")
    info = error_info(error)
    assert (info.reason, info.metadata["message_type"]) == ("MALFORMED_REQUEST", message_type)
    logged = [r for r in caplog.records if r.name.startswith("layotto")]
    assert len(logged) <= 1 and all(r.levelno == logging.DEBUG and r.exc_info is None for r in logged)


async def test_a_garbage_message_after_a_good_first_one_ends_a_subscription_with_invalid_argument(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    initial = pb.SubscribeTopicEventsRequest(
        initial_request=pb.SubscribeTopicEventsRequestInitial(pubsub_name="in-memory", topic="t")
    )
    requests: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def stream() -> AsyncIterator[bytes]:
        while (message := await requests.get()) is not None:
            yield message

    call = channel.stream_stream("/spec.proto.runtime.v1.Runtime/SubscribeTopicEvents")(stream())
    await requests.put(initial.SerializeToString())
    first = pb.SubscribeTopicEventsResponse.FromString(await asyncio.wait_for(call.read(), 10))
    assert first.HasField("initial_response")
    await requests.put(GARBAGE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while await asyncio.wait_for(call.read(), 10) is not grpc.aio.EOF:
            pass
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "MALFORMED_REQUEST"
    await asyncio.sleep(0.1)
    gc.collect()  # a task whose exception nobody read would be reported now
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_the_config_subscription_stream_ends_on_a_garbage_message_after_a_good_one(
    channel: grpc.aio.Channel,
) -> None:
    good = pb.SubscribeConfigurationRequest(store_name="in-memory", keys=["k"]).SerializeToString()
    service = RUNTIME_SERVICE.full_name
    error = await asyncio.wait_for(
        send(raw_call(channel, service, "SubscribeConfiguration"), service, "SubscribeConfiguration", good, GARBAGE), 10
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "MALFORMED_REQUEST"


# -- the adapter on its own: every call shape, with a handler that reads the stream -------------


async def collect(requests: AsyncIterator[Any], context: Any) -> Any:
    names = [request.name async for request in requests]
    assert names == ["a", "a"]
    return empty_pb2.Empty()


async def echo(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        yield pb.SubscribeConfigurationResponse(store_name=request.store_name)


@pytest.fixture
async def shapes_channel() -> AsyncIterator[grpc.aio.Channel]:
    """A server of the Runtime service with a handler of each call shape, all reading their requests."""
    routes = {"GetState": save_state, "GetFile": subscribe, "PutFile": collect, "SubscribeConfiguration": echo}
    server = grpc.aio.server()
    handlers = method_handlers(RUNTIME_SERVICE, routes)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(RUNTIME_SERVICE.full_name, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    await server.stop(0)


SHAPES = [  # (rpc, a good request message); the request streams send it before the garbage
    ("GetState", b""),
    ("GetFile", b""),
    ("PutFile", pb.PutFileRequest(name="a").SerializeToString()),
    ("SubscribeConfiguration", pb.SubscribeConfigurationRequest(store_name="a").SerializeToString()),
]


@pytest.mark.parametrize(("rpc", "good"), SHAPES)
async def test_every_call_shape_refuses_undecodable_bytes(
    shapes_channel: grpc.aio.Channel, rpc: str, good: bytes
) -> None:
    service = RUNTIME_SERVICE.full_name
    messages = (good, GARBAGE) if RUNTIME_SERVICE.methods_by_name[rpc].client_streaming else (GARBAGE,)
    error = await send(raw_call(shapes_channel, service, rpc), service, rpc, *messages)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "MALFORMED_REQUEST"


@pytest.mark.parametrize(("rpc", "good"), SHAPES[2:])
async def test_a_stream_of_good_messages_is_read_whole(shapes_channel: grpc.aio.Channel, rpc: str, good: bytes) -> None:
    call = raw_call(shapes_channel, RUNTIME_SERVICE.full_name, rpc)(iter([good, good]))
    if rpc == "PutFile":
        assert await call == empty_pb2.Empty().SerializeToString()
    else:
        assert [pb.SubscribeConfigurationResponse.FromString(m).store_name async for m in call] == ["a", "a"]


async def test_a_traced_runtime_refuses_undecodable_bytes_and_records_the_status(tmp_path: Path) -> None:
    from layotto.server import RuntimeConfig

    with OtlpReceiver() as otlp:
        settings = TracingSettings(exporters=("otlp",), otlp_endpoint=otlp.endpoint, service_name="runtime")
        config = RuntimeConfig(
            grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path), tracing=settings
        )
        async with Runtime(config) as rt, grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as opened:
            error = await call_error(opened.unary_unary("/spec.proto.runtime.v1.Runtime/GetState")(GARBAGE))
        name = "spec.proto.runtime.v1.Runtime/GetState"
        spans = otlp.wait_for(lambda got: any(s.name == name for s in got))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    span = next(s for s in spans if s.name == name)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
