"""PublishEvent and SubscribeTopicEvents through the gRPC API, on in-memory and on Redis Streams."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import backends
import grpc
import pytest

from layotto.proto.runtime.v1 import appcallback_pb2 as cb
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig

SUCCESS, RETRY, DROP = cb.TopicEventResponse.SUCCESS, cb.TopicEventResponse.RETRY, cb.TopicEventResponse.DROP


@pytest.fixture(params=["in-memory", *backends.REAL_BROKERS])
async def stub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    if request.param != "in-memory":
        backends.require(request.param)
    metadata = backends.pubsub_metadata(request.param)
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        components={"pubsub": {"bus": ComponentConfig(request.param, metadata)}},
    )
    async with Runtime(config) as runtime:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
        yield runtime_pb2_grpc.RuntimeStub(channel)
        await channel.close()


class Subscriber:
    """One SubscribeTopicEvents stream that answers each event with the status ``decide`` picks."""

    def __init__(
        self, stub: runtime_pb2_grpc.RuntimeStub, topic: str, decide: Any = None, dead_letter: str | None = None
    ) -> None:
        self.events: list[cb.TopicEventRequest] = []
        self._decide = decide or (lambda event, count: SUCCESS)
        self._acks: asyncio.Queue[pb.SubscribeTopicEventsRequest | None] = asyncio.Queue()
        initial = pb.SubscribeTopicEventsRequestInitial(
            pubsub_name="bus", topic=topic, metadata={"maxDeliveryAttempts": "3"}
        )
        if dead_letter:
            initial.dead_letter_topic = dead_letter
        self._acks.put_nowait(pb.SubscribeTopicEventsRequest(initial_request=initial))
        self._call = stub.SubscribeTopicEvents(self._requests())
        self._task: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[pb.SubscribeTopicEventsRequest]:
        while (request := await self._acks.get()) is not None:
            yield request

    async def start(self) -> Subscriber:
        first = await self._call.read()
        assert first.WhichOneof("subscribe_topic_events_response_type") == "initial_response"
        self._task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            response = await self._call.read()
            if response is grpc.aio.EOF:
                return
            event = response.event_message
            self.events.append(event)
            status = self._decide(event, sum(1 for e in self.events if e.id == event.id))
            processed = pb.SubscribeTopicEventsRequestProcessed(
                id=event.id, status=cb.TopicEventResponse(status=status)
            )
            self._acks.put_nowait(pb.SubscribeTopicEventsRequest(event_processed=processed))

    async def stop(self) -> None:
        self._acks.put_nowait(None)
        self._call.cancel()
        if self._task is not None:
            with pytest.raises(asyncio.CancelledError):
                await self._task


async def publish(
    stub: runtime_pb2_grpc.RuntimeStub, topic: str, data: bytes, content_type: str = "", **metadata: str
) -> None:
    await stub.PublishEvent(
        pb.PublishEventRequest(
            pubsub_name="bus", topic=topic, data=data, data_content_type=content_type, metadata=metadata
        )
    )


async def wait_for(condition: Any, seconds: float = 15) -> None:
    for _ in range(int(seconds * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


async def test_publish_is_delivered_as_a_cloudevent(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    sub = await Subscriber(stub, topic).start()
    await publish(stub, topic, b'{"n": 1}', "application/json")
    await publish(stub, topic, b"\x00\xff", "application/octet-stream")
    await publish(stub, topic, b"raw bytes", rawPayload="true")
    await wait_for(lambda: len(sub.events) == 3)
    first, binary, raw = sub.events
    assert json.loads(first.data) == {"n": 1} and first.data_content_type == "application/json"
    assert first.spec_version == "1.0" and first.id and first.topic == topic and first.pubsub_name == "bus"
    assert binary.data == b"\x00\xff"
    assert raw.data == b"raw bytes" and raw.metadata["rawPayload"] == "true"
    await sub.stop()


async def test_retry_redelivers_then_dead_letters(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    topic, dead = f"jobs-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    graveyard = await Subscriber(stub, dead).start()
    flaky = await Subscriber(
        stub, topic, decide=lambda e, n: RETRY if e.data == b"always" or n < 2 else SUCCESS, dead_letter=dead
    ).start()
    await publish(stub, topic, b"once", "text/plain")
    await publish(stub, topic, b"always", "text/plain")
    await wait_for(lambda: len(graveyard.events) == 1)
    assert [e.data for e in flaky.events].count(b"once") == 2
    assert [e.data for e in flaky.events].count(b"always") == 3  # maxDeliveryAttempts
    assert graveyard.events[0].data == b"always"
    await flaky.stop()
    await graveyard.stop()


async def test_streams_on_one_topic_compete(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    topic = f"work-{uuid.uuid4().hex[:6]}"
    a, b = await Subscriber(stub, topic).start(), await Subscriber(stub, topic).start()
    for i in range(20):
        await publish(stub, topic, str(i).encode(), "text/plain")
    await wait_for(lambda: len(a.events) + len(b.events) == 20)
    await asyncio.sleep(0.3)
    got = sorted(int(e.data) for e in a.events + b.events)
    assert got == list(range(20)), "each message goes to exactly one stream"
    assert a.events and b.events
    await a.stop()
    await b.stop()


async def test_bad_input(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    for request, code, field in (
        (pb.PublishEventRequest(pubsub_name="nope", topic="t"), grpc.StatusCode.INVALID_ARGUMENT, "pubsub_name"),
        (pb.PublishEventRequest(pubsub_name="bus", topic=""), grpc.StatusCode.INVALID_ARGUMENT, "topic"),
        (
            pb.PublishEventRequest(pubsub_name="bus", topic="t", data=b"x" * (4 * 1024 * 1024 + 1)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "data",
        ),
        (
            pb.PublishEventRequest(pubsub_name="bus", topic="t", data=b"{", data_content_type="application/json"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "data",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.PublishEvent(request)
        assert caught.value.code() == code and caught.value.details().startswith(field)


async def test_the_publish_size_limit_is_configurable(tmp_path: Path) -> None:
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        max_publish_bytes=1024,
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
    )
    async with Runtime(config) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await publish(stub, "t", b"x" * 1024)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await publish(stub, "t", b"x" * 1025)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert caught.value.details().startswith("data") and "1024" in caught.value.details()


async def test_an_unreachable_app_callback_is_logged_once_and_picked_up_when_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from server_helpers import free_port

    from layotto.client import Message, SubscriberApp
    from layotto.server import subscription_keeper as keeper

    monkeypatch.setattr(keeper, "UNREACHABLE_RETRY_SECONDS", 0.01)
    monkeypatch.setattr(keeper, "UNREACHABLE_MAX_RETRY_SECONDS", 0.04)
    caplog.set_level("DEBUG", logger=keeper.log.name)
    app_port = free_port()
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_callback_address=f"127.0.0.1:{app_port}",
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
    )

    def lines(level: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == keeper.log.name and r.levelname == level]

    app = SubscriberApp()

    @app.subscribe("bus", "orders")
    async def on_order(message: Message) -> None:
        pass

    async with Runtime(config) as runtime:
        await wait_for(lambda: len(lines("DEBUG")) >= 4)  # it kept asking...
        assert len(lines("INFO")) == 1 and "not reachable" in lines("INFO")[0]  # ...and said so once
        async with app.serve(f"127.0.0.1:{app_port}"):
            assert runtime.app_subscriptions is not None
            await asyncio.wait_for(runtime.app_subscriptions.listed.wait(), 15)
    assert "answers again" in lines("INFO")[1]


@pytest.fixture
async def in_memory_stub(tmp_path: Path) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
    )
    async with Runtime(config) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


async def subscribed(stub: runtime_pb2_grpc.RuntimeStub, topic: str) -> Any:
    """A SubscribeTopicEvents call on ``topic`` past its initial response."""
    call = stub.SubscribeTopicEvents()
    initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name="bus", topic=topic)
    await call.write(pb.SubscribeTopicEventsRequest(initial_request=initial))
    assert (await call.read()).HasField("initial_response")
    return call


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            pb.SubscribeTopicEventsRequest(
                initial_request=pb.SubscribeTopicEventsRequestInitial(pubsub_name="bus", topic="again")
            ),
            "initial_request",
        ),
        (pb.SubscribeTopicEventsRequest(), "subscribe_topic_events_request_type"),
    ],
    ids=["second-initial-request", "empty-request"],
)
async def test_a_bad_request_mid_stream_ends_it_with_invalid_argument(
    in_memory_stub: runtime_pb2_grpc.RuntimeStub, request_: pb.SubscribeTopicEventsRequest, field: str
) -> None:
    call = await subscribed(in_memory_stub, "t")
    await call.write(request_)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), 15)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field)


async def test_an_answer_for_an_unknown_id_is_logged_and_the_stream_goes_on(
    in_memory_stub: runtime_pb2_grpc.RuntimeStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="layotto.server.api.pubsub")
    call = await subscribed(in_memory_stub, "t")
    processed = pb.SubscribeTopicEventsRequestProcessed(
        id="no-such-event", status=cb.TopicEventResponse(status=SUCCESS)
    )
    await call.write(pb.SubscribeTopicEventsRequest(event_processed=processed))
    await publish(in_memory_stub, "t", b"after")
    response = await asyncio.wait_for(call.read(), 15)
    assert response.event_message.data == b"after"
    await wait_for(lambda: any("no-such-event" in r.getMessage() for r in caplog.records))
    unknown = [r for r in caplog.records if "no-such-event" in r.getMessage()]
    assert [r.levelno for r in unknown] == [logging.DEBUG]
    call.cancel()


async def test_a_dead_letter_topic_equal_to_the_topic_is_refused_on_both_apis(tmp_path: Path) -> None:
    from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
    from layotto.proto.dapr.runtime.v1 import pubsub_pb2 as dapr_pubsub

    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
    )
    metadata = {"maxDeliveryAttempts": "1"}
    async with Runtime(config) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        layotto = pb.SubscribeTopicEventsRequest(
            initial_request=pb.SubscribeTopicEventsRequestInitial(
                pubsub_name="bus", topic="m8", dead_letter_topic="m8", metadata=metadata
            )
        )
        dapr = dapr_pubsub.SubscribeTopicEventsRequestAlpha1(
            initial_request=dapr_pubsub.SubscribeTopicEventsRequestInitialAlpha1(
                pubsub_name="bus", topic="m8", dead_letter_topic="m8", metadata=metadata
            )
        )
        calls = [
            runtime_pb2_grpc.RuntimeStub(channel).SubscribeTopicEvents(iter([layotto])),
            dapr_pb2_grpc.DaprStub(channel).SubscribeTopicEventsAlpha1(iter([dapr])),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details().startswith("initial_request.dead_letter_topic: is the subscribed topic 'm8'")


async def test_a_message_is_dead_lettered_once_never_in_a_cycle(tmp_path: Path) -> None:
    """a dead-letters to b and b to a: a message failing everywhere goes a -> b once, then is dropped."""
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"pubsub": {"bus": ComponentConfig("in-memory", {"redeliverDelayInSeconds": "0"})}},
    )
    async with Runtime(config) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        a = await Subscriber(stub, "a", decide=lambda e, n: RETRY, dead_letter="b").start()
        b = await Subscriber(stub, "b", decide=lambda e, n: RETRY, dead_letter="a").start()
        await publish(stub, "a", b"poison", "text/plain")
        await wait_for(lambda: len(b.events) == 3)  # maxDeliveryAttempts, then dropped: not back to a
        await publish(stub, "b", b"after", "text/plain")  # b's topic keeps serving
        await wait_for(lambda: len(b.events) == 6)
        await publish(stub, "a", b"last", "text/plain")  # handed out after b's "after" reached a
        await wait_for(lambda: [e.data for e in a.events].count(b"last") == 3)
        assert [e.data for e in a.events].count(b"poison") == 3, "the poison message came back to a"
        assert [e.data for e in b.events].count(b"poison") == 3
        assert b.events[0].metadata["layotto-dead-lettered-from"] == "bus/a"
        await a.stop()
        await b.stop()


async def test_an_app_subscription_dead_lettering_to_its_own_topic_is_logged_once_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from server_helpers import free_port

    from layotto.client import Message, SubscriberApp
    from layotto.server import appchannel

    app_port = free_port()
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_callback_address=f"127.0.0.1:{app_port}",
        subscriptions_refresh_seconds=0.1,
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
    )
    app = SubscriberApp()
    received: list[bytes] = []

    @app.subscribe("bus", "m8", dead_letter_topic="m8")
    async def looping(message: Message) -> None:
        raise AssertionError("never subscribed")

    @app.subscribe("bus", "orders")
    async def on_order(message: Message) -> None:
        received.append(message.data)

    caplog.set_level("INFO", logger=appchannel.log.name)
    async with Runtime(config) as runtime, app.serve(f"127.0.0.1:{app_port}"):
        assert runtime.app_subscriptions is not None
        await asyncio.wait_for(runtime.app_subscriptions.listed.wait(), 15)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            await publish(stub, "orders", b"o1", "text/plain")
            await wait_for(lambda: received == [b"o1"])
            await asyncio.sleep(0.5)  # several listings later
    refused = [r.getMessage() for r in caplog.records if "ignoring the app's subscription" in r.getMessage()]
    assert len(refused) == 1, refused
    assert "bus/m8" in refused[0] and "subscription.dead_letter_topic: is the subscribed topic 'm8'" in refused[0]
