"""Retries, deadlines and error translation, against small gRPC servers in the test.

These servers stand in for a misbehaving runtime (unreachable at first, or slow):
they exercise the SDK's transport, not any backend.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2

from layotto.client import (
    NO_RETRY,
    BackendUnavailable,
    DeadlineExceeded,
    RetryPolicy,
    RuntimeClient,
    RuntimeInternalError,
    RuntimeUnavailable,
)
from layotto.proto.reasons import ERROR_DOMAIN
from layotto.proto.runtime.v1 import runtime_pb2 as pb


async def serve(handler: Callable[[Any, Any], Any]) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    method = grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=pb.GetStateRequest.FromString,
        response_serializer=pb.GetStateResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("spec.proto.runtime.v1.Runtime", {"GetState": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, list[int]]]:
    calls: list[int] = []

    async def handler(request: pb.GetStateRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetStateResponse:
        calls.append(1)
        if len(calls) < 3:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return pb.GetStateResponse(data=b"finally", etag="1")

    server, address = await serve(handler)
    yield address, calls
    await server.stop(None)


async def test_unavailable_is_retried_with_backoff(flaky: tuple[str, list[int]]) -> None:
    address, calls = flaky
    async with RuntimeClient(address, retry=RetryPolicy(attempts=4, initial_backoff=0.01)) as client:
        item = await client.state.get("s", "k")
    assert item.value == b"finally" and len(calls) == 3


async def test_retries_give_up_with_runtime_unavailable(flaky: tuple[str, list[int]]) -> None:
    address, calls = flaky
    async with RuntimeClient(address, retry=RetryPolicy(attempts=2, initial_backoff=0.01)) as client:
        with pytest.raises(RuntimeUnavailable, match="warming up"):
            await client.state.get("s", "k")
    assert len(calls) == 2


async def test_nothing_listening_is_runtime_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with RuntimeClient(f"127.0.0.1:{port}", retry=RetryPolicy(attempts=2, initial_backoff=0.01)) as client:
        with pytest.raises(RuntimeUnavailable):
            await client.state.get("s", "k")


async def test_per_call_timeout_raises_deadline_exceeded() -> None:
    async def slow(request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
        await asyncio.sleep(5)
        return pb.GetStateResponse()

    server, address = await serve(slow)
    try:
        async with RuntimeClient(address, retry=NO_RETRY) as client:
            with pytest.raises(DeadlineExceeded) as caught:
                await client.state.get("s", "k", timeout=0.2)
            assert isinstance(caught.value, TimeoutError)
    finally:
        await server.stop(None)


def test_retry_delays_grow_and_are_capped() -> None:
    delays = RetryPolicy(attempts=6, initial_backoff=0.1, max_backoff=0.5).delays()
    assert len(delays) == 5
    assert 0.1 <= delays[0] <= 0.12 and 0.2 <= delays[1] <= 0.24
    assert all(d <= 0.6 for d in delays)


def status_details(reason: str) -> tuple[tuple[str, bytes], ...]:
    """The trailer carrying an ErrorInfo with ``reason``, as the runtime sends it."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message=reason, details=[info])
    return (("grpc-status-details-bin", status.SerializeToString()),)


async def serve_publish(fail_times: int, reason: str) -> tuple[grpc.aio.Server, str, list[int]]:
    """A PublishEvent that answers UNAVAILABLE (with ``reason``, "" for none) ``fail_times`` times."""
    calls: list[int] = []

    async def handler(request: pb.PublishEventRequest, context: Any) -> empty_pb2.Empty:
        calls.append(1)
        if len(calls) <= fail_times:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, reason, trailing_metadata=status_details(reason) if reason else ()
            )
        return empty_pb2.Empty()

    server = grpc.aio.server()
    method = grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=pb.PublishEventRequest.FromString,
        response_serializer=empty_pb2.Empty.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("spec.proto.runtime.v1.Runtime", {"PublishEvent": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}", calls


FAST = RetryPolicy(attempts=4, initial_backoff=0.01)


async def test_a_runtime_shutting_down_is_retried_even_for_a_publish() -> None:
    server, address, calls = await serve_publish(2, "RUNTIME_SHUTTING_DOWN")
    try:
        async with RuntimeClient(address, retry=FAST) as client:
            await client.pubsub.publish("bus", "t", "x")
    finally:
        await server.stop(None)
    assert len(calls) == 3, "the runtime did not start the call: safe to send again"


async def test_a_publish_that_may_have_reached_the_runtime_is_not_retried() -> None:
    server, address, calls = await serve_publish(2, "")
    try:
        async with RuntimeClient(address, retry=FAST) as client:
            with pytest.raises(RuntimeUnavailable):
                await client.pubsub.publish("bus", "t", "x")
    finally:
        await server.stop(None)
    assert len(calls) == 1


async def test_a_backend_outage_is_raised_at_once_not_retried() -> None:
    server, address, calls = await serve_publish(2, "BACKEND_UNAVAILABLE")
    try:
        async with RuntimeClient(address, retry=FAST) as client:
            with pytest.raises(BackendUnavailable) as caught:
                await client.pubsub.publish("bus", "t", "x")
    finally:
        await server.stop(None)
    assert len(calls) == 1 and not isinstance(caught.value, RuntimeUnavailable)


async def test_retries_stop_at_the_deadline(flaky: tuple[str, list[int]]) -> None:
    address, calls = flaky
    async with RuntimeClient(address, retry=RetryPolicy(attempts=4, initial_backoff=1.0)) as client:
        with pytest.raises(RuntimeUnavailable):
            await client.state.get("s", "k", timeout=0.5)  # the first backoff would pass the deadline
    assert len(calls) == 1


async def test_a_subscription_the_runtime_never_confirms_raises_deadline_exceeded() -> None:
    async def silent(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async for _ in requests:  # reads the initial request, never answers it
            pass
        await asyncio.sleep(30)
        yield pb.SubscribeTopicEventsResponse()  # pragma: no cover - never reached

    server = grpc.aio.server()
    method = grpc.stream_stream_rpc_method_handler(
        silent,
        request_deserializer=pb.SubscribeTopicEventsRequest.FromString,
        response_serializer=pb.SubscribeTopicEventsResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("spec.proto.runtime.v1.Runtime", {"SubscribeTopicEvents": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with RuntimeClient(f"127.0.0.1:{port}", timeout=0.5, retry=NO_RETRY) as client:
            with pytest.raises(DeadlineExceeded, match="first request"):
                async with asyncio.timeout(15):  # a guard against the hang this test is about
                    await client.pubsub.subscribe("bus", "orders").__aenter__()
    finally:
        await server.stop(None)


CORE_FAILURE = "Internal error from Core"  # what grpc.aio's client reports when its core fails a call


async def serve_watch(failures: list[tuple[str, str]]) -> tuple[grpc.aio.Server, str, list[int]]:
    """A SubscribeConfiguration that ends its first openings INTERNAL, one per ``(details, reason)``
    of ``failures`` (reason "" for no ErrorInfo), then reports the item ``flag=on`` and stays open."""
    opened: list[int] = []

    async def handler(requests: Any, context: Any) -> AsyncIterator[pb.SubscribeConfigurationResponse]:
        await anext(requests)
        opened.append(1)
        if len(opened) <= len(failures):
            details, reason = failures[len(opened) - 1]
            trailers = status_details(reason) if reason else ()
            await context.abort(grpc.StatusCode.INTERNAL, details, trailing_metadata=trailers)
        yield pb.SubscribeConfigurationResponse(items=[pb.ConfigurationItem(key="flag", content="on")])
        await asyncio.Event().wait()

    server = grpc.aio.server()
    method = grpc.stream_stream_rpc_method_handler(
        handler,
        request_deserializer=pb.SubscribeConfigurationRequest.FromString,
        response_serializer=pb.SubscribeConfigurationResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("spec.proto.runtime.v1.Runtime", {"SubscribeConfiguration": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}", opened


async def test_a_watch_opened_while_grpc_core_fails_the_stream_is_opened_again() -> None:
    # what grpc.aio reports for a stream opened against a stopping runtime (grpc/grpc#36066)
    server, address, opened = await serve_watch([(CORE_FAILURE, ""), (CORE_FAILURE, "")])
    try:
        async with RuntimeClient(address, retry=FAST) as client, client.configuration.watch("c", ["flag"]) as watch:
            item = await anext(watch)
    finally:
        await server.stop(None)
    assert (item.key, item.content) == ("flag", "on") and len(opened) == 3


@pytest.mark.parametrize(
    "failure",
    [(CORE_FAILURE, "INTERNAL"), ("Internal error from Core.", ""), ("the store failed", "")],
    ids=["the-runtime's-INTERNAL", "other-details", "another-INTERNAL"],
)
async def test_an_internal_error_the_runtime_sent_ends_the_watch(failure: tuple[str, str]) -> None:
    server, address, opened = await serve_watch([failure])
    try:
        async with RuntimeClient(address, retry=FAST) as client:
            with pytest.raises(RuntimeInternalError) as caught:
                await client.configuration.watch("c", ["flag"]).__aenter__()
    finally:
        await server.stop(None)
    assert len(opened) == 1 and not caught.value.transport_failure


async def test_a_publish_failed_by_grpc_core_is_not_sent_again() -> None:
    server = grpc.aio.server()
    calls: list[int] = []

    async def handler(request: pb.PublishEventRequest, context: Any) -> empty_pb2.Empty:
        calls.append(1)
        await context.abort(grpc.StatusCode.INTERNAL, CORE_FAILURE)

    method = grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=pb.PublishEventRequest.FromString,
        response_serializer=empty_pb2.Empty.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("spec.proto.runtime.v1.Runtime", {"PublishEvent": method}),)
    )
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        async with RuntimeClient(address, retry=FAST) as client:
            with pytest.raises(RuntimeInternalError) as caught:
                await client.pubsub.publish("bus", "t", "x")
    finally:
        await server.stop(None)
    assert len(calls) == 1 and caught.value.transport_failure, "it may have reached the runtime: the app decides"
