"""MockTransport: the SDK's test double that needs no runtime."""

from __future__ import annotations

from typing import Any

import pytest

from layotto.client import (
    ClientClosed,
    Consistency,
    EtagMismatch,
    NotImplementedByRuntime,
    RuntimeClient,
    StateWrite,
)
from layotto.client.testing import MockTransport
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
