"""Pub/Sub across real `layotto serve` processes on one broker: a message whose handler
never acked survives a SIGKILLed runtime, and two runtimes share a topic's messages."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import backends
import pytest
import yaml
from server_helpers import ServerProcess, start_server

from layotto.client import ReceivedMessage, RuntimeClient, Subscription


def write_config(tmp_path: Path, broker: str) -> Path:
    extra: dict[str, str] = {}
    if broker == "mqtt":  # redelivery needs the same session back: a stable client id and a session expiry
        extra = {"clientID": f"layotto-test-{uuid.uuid4().hex[:8]}", "sessionExpiryInSeconds": "120"}
    if broker == "nats":
        extra = {"streamPrefix": f"t{uuid.uuid4().hex[:8]}"}
    config = {
        "app_id": f"app-{uuid.uuid4().hex[:8]}",
        "pubsub": {"bus": {"type": broker, "metadata": backends.pubsub_metadata(broker, **extra)}},
    }
    path = tmp_path / f"runtime-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def next_message(subscription: Subscription, seconds: float) -> ReceivedMessage:
    return await asyncio.wait_for(anext(subscription), seconds)


def stop(server: ServerProcess) -> None:
    if server.process.poll() is None:
        code, stderr = server.terminate()
        assert code == 0, stderr


@pytest.mark.parametrize("broker", backends.REAL_BROKERS)
async def test_an_unacked_message_survives_a_sigkilled_runtime(tmp_path: Path, broker: str) -> None:
    backends.require(broker)
    config = write_config(tmp_path, broker)
    topic = f"precious-{uuid.uuid4().hex[:8]}"
    first = start_server("-c", str(config), data_dir=tmp_path / "first")
    try:
        async with RuntimeClient(first.grpc_address) as client, client.pubsub.subscribe("bus", topic) as subscription:
            await client.pubsub.publish("bus", topic, "do not lose me")
            received = await next_message(subscription, 20)  # and never acked
            assert received.text() == "do not lose me"
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
    finally:
        first.process.kill()
        first.process.communicate()
    second = start_server("-c", str(config), data_dir=tmp_path / "second")
    try:
        async with RuntimeClient(second.grpc_address) as client, client.pubsub.subscribe("bus", topic) as subscription:
            again = await next_message(subscription, 45)
            assert again.text() == "do not lose me" and again.id == received.id
            await again.ack()
    finally:
        stop(second)


async def handle_all(subscription: Subscription, seen: list[str]) -> None:
    async for message in subscription:
        seen.append(message.text())
        await message.ack()


@pytest.mark.parametrize("broker", backends.REAL_BROKERS)
async def test_two_runtimes_compete_for_one_topic(tmp_path: Path, broker: str) -> None:
    backends.require(broker)
    config = write_config(tmp_path, broker)
    if broker == "mqtt":  # two runtimes must not share an MQTT client id
        raw = yaml.safe_load(config.read_text())
        raw["pubsub"]["bus"]["metadata"].pop("clientID")
        config.write_text(yaml.safe_dump(raw))
    topic = f"work-{uuid.uuid4().hex[:8]}"
    servers = [start_server("-c", str(config), data_dir=tmp_path / f"rt{i}") for i in range(2)]
    try:
        clients = [RuntimeClient(server.grpc_address) for server in servers]
        seen: list[list[str]] = [[], []]
        subscriptions = [client.pubsub.subscribe("bus", topic) for client in clients]
        for subscription in subscriptions:
            await subscription.__aenter__()
        workers = [asyncio.create_task(handle_all(s, got)) for s, got in zip(subscriptions, seen, strict=True)]
        expected = [f"job-{i}" for i in range(60)]
        for i, text in enumerate(expected):
            await clients[i % 2].pubsub.publish("bus", topic, text)
        for _ in range(600):
            if len(seen[0]) + len(seen[1]) >= len(expected):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # time for a duplicate to show up, if there were one
        for worker in workers:
            worker.cancel()
        for subscription in subscriptions:
            await subscription.aclose()
        for client in clients:
            await client.aclose()
        assert sorted(seen[0] + seen[1]) == sorted(expected), "each acked message is handled exactly once"
        assert seen[0] and seen[1], "both runtimes must take a share"
    finally:
        for server in servers:
            stop(server)
