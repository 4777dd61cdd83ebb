"""An ack (or retry, drop) the app has awaited reaches the runtime, even when the app leaves the
subscription right after it; on every broker."""

from __future__ import annotations

import asyncio
import uuid

import brokers
import pytest

from layotto.client import BackendUnavailable, ClientClosed, ReceivedMessage, RuntimeClient, Subscription
from layotto.client.testing import test_runtime


async def next_message(subscription: Subscription, seconds: float = 15) -> ReceivedMessage:
    return await asyncio.wait_for(anext(subscription), seconds)


async def publish(client: RuntimeClient, topic: str, text: str) -> None:
    """Publish, waiting for a broker the runtime is still connecting to (MQTT connects in the
    background): BackendUnavailable is the app's to retry."""
    for _ in range(100):
        try:
            await client.pubsub.publish("bus", topic, text)
            return
        except BackendUnavailable:
            await asyncio.sleep(0.1)
    await client.pubsub.publish("bus", topic, text)


async def received_for(client: RuntimeClient, topic: str, seconds: float) -> list[str]:
    """What a new subscriber of ``topic`` receives (acking each) within ``seconds``, after it
    publishes a marker (so it is known to be receiving)."""
    texts: list[str] = []
    async with client.pubsub.subscribe("bus", topic) as subscription:
        await publish(client, topic, "marker")
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + seconds
        while (left := ends_at - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(anext(subscription), left)
            except TimeoutError:
                break
            texts.append(message.text())
            await message.ack()
    return texts


@pytest.mark.parametrize("broker", brokers.BROKERS)
@pytest.mark.parametrize("answer", ["ack", "drop"])
async def test_an_answer_then_leaving_the_subscription_is_never_redelivered(broker: str, answer: str) -> None:
    brokers.require(broker)
    topic = f"settle-{uuid.uuid4().hex[:8]}"
    async with test_runtime(brokers.config(broker)) as runtime, runtime.client() as client:
        async with client.pubsub.subscribe("bus", topic) as subscription:
            await publish(client, topic, "once")
            async for message in subscription:
                assert message.text() == "once"
                await getattr(message, answer)()
                break
        await asyncio.sleep(brokers.REDELIVERY_SECONDS)  # past the broker's redelivery of un-acked messages
        texts = await received_for(client, topic, brokers.REDELIVERY_SECONDS)
    assert "marker" in texts, "the second subscriber receives"
    assert "once" not in texts, f"the {answer}ed message came again on {broker}"


@pytest.mark.parametrize("broker", ["in-memory", "redis"])
async def test_an_unanswered_message_is_delivered_again_after_the_subscription_closes(broker: str) -> None:
    brokers.require(broker)
    topic = f"settle-{uuid.uuid4().hex[:8]}"
    async with test_runtime(brokers.config(broker)) as runtime, runtime.client() as client:
        async with client.pubsub.subscribe("bus", topic) as subscription:
            await publish(client, topic, "unanswered")
            assert (await next_message(subscription)).text() == "unanswered"
        texts = await received_for(client, topic, brokers.REDELIVERY_SECONDS + 2)
    assert "unanswered" in texts, "closing without an answer leaves the message to be delivered again"


async def test_an_answer_after_the_subscription_closed_raises_and_the_message_comes_again() -> None:
    topic = f"settle-{uuid.uuid4().hex[:8]}"
    async with test_runtime(brokers.config("in-memory")) as runtime, runtime.client() as client:
        async with client.pubsub.subscribe("bus", topic) as subscription:
            await publish(client, topic, "late")
            message = await next_message(subscription)
        with pytest.raises(ClientClosed, match="subscription is closed"):
            await message.ack()
        texts = await received_for(client, topic, brokers.REDELIVERY_SECONDS + 2)
    assert "late" in texts, "the answer was not sent: the runtime delivers the message again"
