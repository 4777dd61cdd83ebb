"""client.pubsub and SubscriberApp against the in-process test runtime."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from layotto.client import (
    InvalidArgument,
    Message,
    ReceivedMessage,
    RetryPolicy,
    RuntimeClient,
    StoreNotFound,
    SubscriberApp,
    Subscription,
    TopicStatus,
)
from layotto.client.testing import TestRuntime, test_runtime
from layotto.server import embedded_defaults


@pytest.fixture
async def runtime() -> AsyncIterator[TestRuntime]:
    async with test_runtime() as rt:
        yield rt


@pytest.fixture
async def client(runtime: TestRuntime) -> AsyncIterator[RuntimeClient]:
    async with runtime.client() as c:
        yield c


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def next_message(subscription: Subscription, seconds: float = 10) -> ReceivedMessage:
    return await asyncio.wait_for(anext(subscription), seconds)


async def test_publish_dict_str_bytes_and_receive_them_typed(client: RuntimeClient) -> None:
    topic = topic_name()
    async with client.pubsub.subscribe("in-memory", topic) as subscription:
        await client.pubsub.publish("in-memory", topic, {"order": 7})
        await client.pubsub.publish("in-memory", topic, "plain text")
        await client.pubsub.publish("in-memory", topic, b"\x01\x02", metadata={"k": "v"})
        received = []
        for _ in range(3):  # in-memory is ordered: the next message comes once this one is settled
            message = await next_message(subscription)
            assert message.topic == topic and message.pubsub == "in-memory" and message.id
            await message.ack()
            received.append(message)
        as_json, as_text, as_bytes = received
    assert as_json.json() == {"order": 7} and as_json.content_type == "application/json"
    assert as_text.text() == "plain text" and as_text.content_type == "text/plain"
    assert as_bytes.data == b"\x01\x02" and as_bytes.metadata["k"] == "v"


async def test_retry_redelivers_and_exhausted_messages_go_to_the_dead_letter_topic(client: RuntimeClient) -> None:
    topic, dead = topic_name(), topic_name()
    async with (
        client.pubsub.subscribe("in-memory", dead) as graveyard,
        client.pubsub.subscribe("in-memory", topic, dead_letter_topic=dead, max_delivery_attempts=2) as subscription,
    ):
        await client.pubsub.publish("in-memory", topic, "doomed")
        first = await next_message(subscription)
        await first.retry()
        second = await next_message(subscription)
        assert second.id == first.id and second.text() == "doomed"
        await second.retry()
        buried = await next_message(graveyard)
        assert buried.text() == "doomed"
        await buried.ack()


async def test_bad_subscriptions_raise_named_errors(client: RuntimeClient) -> None:
    with pytest.raises(StoreNotFound):
        async with client.pubsub.subscribe("nope", "t"):
            pass
    with pytest.raises(InvalidArgument) as caught:
        async with client.pubsub.subscribe("in-memory", ""):
            pass
    assert caught.value.field == "initial_request.topic"
    with pytest.raises(InvalidArgument) as caught:
        await client.pubsub.publish("in-memory", "", "x")
    assert caught.value.field == "topic"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_subscription_reconnects_when_the_runtime_restarts() -> None:
    port = free_port()
    topic = topic_name()
    retry = RetryPolicy(attempts=3, initial_backoff=0.05, max_backoff=0.2)
    async with RuntimeClient(f"127.0.0.1:{port}", retry=retry) as client:
        async with test_runtime(port=port):
            subscription = client.pubsub.subscribe("in-memory", topic)
            await subscription.__aenter__()
        # the first runtime is gone; the subscription reconnects to the second one
        reader = asyncio.create_task(next_message(subscription, seconds=20))
        await asyncio.sleep(0.5)
        async with test_runtime(port=port) as second, second.client() as publisher:
            for _ in range(100):  # published until the reconnected stream is there to take it
                await publisher.pubsub.publish("in-memory", topic, "after restart")
                await asyncio.sleep(0.1)
                if reader.done():
                    break
            message = await reader
            assert message.text() == "after restart"
            await message.ack()
            await subscription.aclose()


async def test_subscriber_app_handles_retries_and_drops() -> None:
    app = SubscriberApp()
    seen: list[tuple[str, str]] = []
    topic, other = topic_name(), topic_name()

    @app.subscribe("in-memory", topic)
    async def on_event(message: Message) -> TopicStatus | None:
        attempts = sum(1 for _, text in seen if text == message.text())
        seen.append((message.topic, message.text()))
        if message.text() == "flaky" and attempts < 2:
            raise RuntimeError("not yet")
        return TopicStatus.DROP if message.text() == "junk" else None

    @app.subscribe("in-memory", other)
    async def on_other(message: Message) -> None:
        seen.append((message.topic, message.text()))

    async with app.serve("127.0.0.1:0") as app_port:
        config: Any = embedded_defaults().with_overrides(app_callback_address=f"127.0.0.1:{app_port}")
        async with test_runtime(config) as rt, rt.client() as client:
            assert rt.runtime.app_subscriptions is not None
            await asyncio.wait_for(rt.runtime.app_subscriptions.listed.wait(), 10)
            for text in ("flaky", "junk", "fine"):
                await client.pubsub.publish("in-memory", topic, text)
            await client.pubsub.publish("in-memory", other, "elsewhere")
            for _ in range(200):
                if len(seen) >= 6:
                    break
                await asyncio.sleep(0.05)
    assert sorted(seen) == sorted([(topic, "flaky")] * 3 + [(topic, "junk"), (topic, "fine"), (other, "elsewhere")]), (
        "flaky is retried until it succeeds, junk dropped once, each topic to its own handler"
    )


async def test_the_runtime_subscribes_an_app_that_starts_after_it() -> None:
    app = SubscriberApp()
    got: asyncio.Queue[str] = asyncio.Queue()
    topic = topic_name()

    @app.subscribe("in-memory", topic)
    async def on_event(message: Message) -> None:
        got.put_nowait(message.text())

    port = free_port()
    config: Any = embedded_defaults().with_overrides(app_callback_address=f"127.0.0.1:{port}")
    async with test_runtime(config) as rt, rt.client() as client:
        await asyncio.sleep(1.5)  # the runtime asks an app that is not there yet
        async with app.serve(f"127.0.0.1:{port}"):
            assert rt.runtime.app_subscriptions is not None
            await asyncio.wait_for(rt.runtime.app_subscriptions.listed.wait(), 10)
            await client.pubsub.publish("in-memory", topic, "hello late app")
            assert await asyncio.wait_for(got.get(), 10) == "hello late app"


async def test_topics_are_forgotten_when_their_last_subscription_closes(runtime: TestRuntime) -> None:
    async with runtime.client() as client:
        for i in range(5):
            async with (
                client.pubsub.subscribe("in-memory", f"short-lived-{i}"),
                client.pubsub.subscribe("in-memory", f"short-lived-{i}"),
            ):
                assert len(runtime.runtime.topics) == 1
            for _ in range(100):  # the runtime sees the streams end a moment later
                if not len(runtime.runtime.topics):
                    break
                await asyncio.sleep(0.02)
            assert len(runtime.runtime.topics) == 0
        async with client.pubsub.subscribe("in-memory", "again") as subscription:  # and a topic comes back
            await client.pubsub.publish("in-memory", "again", "still works")
            message = await next_message(subscription)
            assert message.text() == "still works"
            await message.ack()
