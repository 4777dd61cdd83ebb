"""MockTransport: the SDK's test double that needs no runtime."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from layotto.client import (
    ClientClosed,
    Consistency,
    DeadlineExceeded,
    EtagMismatch,
    NotImplementedByRuntime,
    RuntimeClient,
    RuntimeUnavailable,
    StateWrite,
)
from layotto.client.testing import MockTransport, test_runtime
from layotto.proto.runtime.v1 import appcallback_pb2 as cb
from layotto.proto.runtime.v1 import runtime_pb2 as pb

RUNTIME = "spec.proto.runtime.v1.Runtime"


async def test_canned_responses_and_recorded_requests() -> None:
    def handler(method: str, request: Any) -> Any:
        if method == f"{RUNTIME}.GetState":
            return pb.GetStateResponse(data=b'{"n": 1}', etag="7")
        return None  # SaveState: an empty response

    transport = MockTransport(handler)
    async with RuntimeClient(transport=transport) as client:
        item = await client.state.get("s", "k", consistency=Consistency.STRONG)
        await client.state.save("s", "k", {"n": 2}, etag=item.etag)
    assert item.json() == {"n": 1} and item.etag == "7"
    (get_method, get), (save_method, save) = transport.requests
    assert get_method == f"{RUNTIME}.GetState" and get.consistency == pb.StateOptions.CONSISTENCY_STRONG
    assert save_method == f"{RUNTIME}.SaveState" and save.states[0].etag.value == "7"
    assert save.states[0].value == b'{"n":2}'


async def test_an_async_handler_raising_an_sdk_error() -> None:
    async def handler(method: str, request: Any) -> Any:
        raise EtagMismatch("stale", code="ABORTED", reason="ETAG_MISMATCH", metadata={"key": "k"})

    async with RuntimeClient(transport=MockTransport(handler)) as client:
        with pytest.raises(EtagMismatch) as caught:
            await client.state.save_bulk("s", [StateWrite("k", 1, etag="1")])
    assert caught.value.key == "k"


async def test_a_subscription_answers_are_recorded() -> None:
    def handler(method: str, request: Any) -> Any:
        assert method == f"{RUNTIME}.SubscribeTopicEvents" and request.initial_request.topic == "orders"
        events = [cb.TopicEventRequest(id=f"m{i}", topic="orders", pubsub_name="bus", data=b"x") for i in (1, 2)]
        return [
            pb.SubscribeTopicEventsResponse(initial_response=pb.SubscribeTopicEventsResponseInitial()),
            *(pb.SubscribeTopicEventsResponse(event_message=event) for event in events),
        ]

    transport = MockTransport(handler)
    async with RuntimeClient(transport=transport) as client, client.pubsub.subscribe("bus", "orders") as sub:
        first = await anext(sub)
        await first.ack()
        second = await anext(sub)
        await second.retry()
    answers = [(r.event_processed.id, r.event_processed.status.status) for _, r in transport.requests[1:]]
    assert answers == [("m1", cb.TopicEventResponse.SUCCESS), ("m2", cb.TopicEventResponse.RETRY)]


async def test_unknown_rpcs_and_a_closed_client_raise_sdk_errors() -> None:
    client = RuntimeClient(transport=MockTransport(lambda method, request: None))
    with pytest.raises(NotImplementedByRuntime):
        await client._transport.unary("NoSuchRpc", pb.GetStateRequest(), None)
    await client.aclose()
    with pytest.raises(ClientClosed):
        await client.state.get("s", "k")


async def test_an_async_handler_is_awaited_under_the_call_timeout() -> None:
    async def handler(method: str, request: Any) -> Any:
        if request.key == "slow":
            await asyncio.sleep(30)
        await asyncio.sleep(0)
        return pb.GetStateResponse(data=b"42", etag="1")

    async with RuntimeClient(transport=MockTransport(handler)) as client:
        item = await client.state.get("s", "k")
        with pytest.raises(DeadlineExceeded, match="GetState"):
            await client.state.get("s", "slow", timeout=0.2)
    assert item.value == b"42" and item.etag == "1"
    async with RuntimeClient(transport=MockTransport(handler, timeout=0.2)) as client:
        with pytest.raises(DeadlineExceeded):
            await client.state.get("s", "slow")


async def test_a_response_of_the_wrong_type_names_the_expected_one() -> None:
    transport = MockTransport(lambda method, request: pb.SaveStateRequest(store_name="s"))
    async with RuntimeClient(transport=transport) as client:
        with pytest.raises(TypeError, match=r"GetState.*SaveStateRequest.*spec\.proto\.runtime\.v1\.GetStateResponse"):
            await client.state.get("s", "k")


async def test_a_stream_handler_answering_nothing_ends_the_stream() -> None:
    async with RuntimeClient(transport=MockTransport(lambda method, request: [])) as client:
        with pytest.raises(RuntimeUnavailable, match="closed the stream before answering"):
            async with asyncio.timeout(10):  # a guard against the hang this test is about
                await client.pubsub.subscribe("bus", "orders").__aenter__()


async def test_a_slow_async_stream_handler_raises_deadline_exceeded() -> None:
    async def handler(method: str, request: Any) -> Any:
        await asyncio.sleep(30)

    async with RuntimeClient(transport=MockTransport(handler, timeout=0.2)) as client:
        with pytest.raises(DeadlineExceeded):
            async with asyncio.timeout(10):
                await client.pubsub.subscribe("bus", "orders").__aenter__()


async def test_a_closed_client_cannot_be_entered_again() -> None:
    client = RuntimeClient(transport=MockTransport(lambda method, request: None))
    async with client:
        pass
    with pytest.raises(ClientClosed):
        async with client:
            pass


@pytest.mark.parametrize("address", ["not a host:::", "127.0.0.1", "host:0", "host:99999", "[::1", ":50001"])
def test_a_malformed_address_raises_value_error_at_construction(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        RuntimeClient(address)


@pytest.mark.parametrize("address", ["127.0.0.1:34904", "localhost:1", "[::1]:50001", "unix:/tmp/x.sock", "dns:///h:1"])
async def test_grpc_targets_are_accepted(address: str) -> None:
    await RuntimeClient(address).aclose()


async def test_test_runtime_without_the_runtime_gives_the_install_command_that_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """layotto-server is not on a package index: the hint is the repository's install line, the
    one docs/sdk.md gives, never `pip install 'layotto-sdk[testing]'`, which cannot find it."""
    monkeypatch.setitem(sys.modules, "layotto.server", None)  # as if only the SDK were installed
    with pytest.raises(ImportError) as raised:
        async with test_runtime():
            pass
    assert "pip install ./proto ./tracing ./server './sdk-python[testing]'" in str(raised.value)
    assert "layotto-sdk[testing]'" not in str(raised.value).replace("sdk-python[testing]", "")
