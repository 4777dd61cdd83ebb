"""A subscription never stops silently: what the runtime created on the broker is deleted or
broken under an open subscription, and every message published afterwards still arrives (issue 13).

The component reports the repair through its health (readiness) while it lasts and is
healthy again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backends
import grpc
import pytest
from test_pubsub import Subscriber, publish, wait_for

from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.pubsub import PubSub
from layotto.server.components.pubsub.nats import safe_name
from layotto.server.config import ComponentConfig

pytestmark = pytest.mark.timeout(120)


class Bus:
    """A runtime with one broker component ``bus`` for a fresh app id, topic and names."""

    def __init__(self, broker: str, runtime: Runtime, app_id: str, prefix: str, client_id: str) -> None:
        self.broker, self.runtime, self.app_id, self.prefix, self.client_id = broker, runtime, app_id, prefix, client_id
        self.topic = f"repair-{uuid.uuid4().hex[:8]}"
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
        self.channel, self.stub = channel, runtime_pb2_grpc.RuntimeStub(channel)

    @property
    def component(self) -> PubSub:
        component = self.runtime.components.find("pubsub", "bus", "pubsub_name")
        assert isinstance(component, PubSub)
        return component


@contextlib.asynccontextmanager
async def bus_on(broker: str, tmp_path: Path) -> AsyncIterator[Bus]:
    backends.require(broker)
    app_id, prefix = f"app-{uuid.uuid4().hex[:8]}", f"r{uuid.uuid4().hex[:8]}"
    client_id = f"layotto-repair-{uuid.uuid4().hex[:8]}"
    extra = {"nats": {"streamPrefix": prefix}, "mqtt": {"clientID": client_id}}.get(broker, {})
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id=app_id,
        components={"pubsub": {"bus": ComponentConfig(broker, backends.pubsub_metadata(broker, **extra))}},
    )
    async with Runtime(config) as runtime:
        bus = Bus(broker, runtime, app_id, prefix, client_id)
        yield bus
        await bus.channel.close()


async def publish_until_accepted(bus: Bus, data: bytes) -> None:
    """Publish, trying again while the broker connection is being repaired (UNAVAILABLE)."""
    for _ in range(100):
        try:
            await publish(bus.stub, bus.topic, data, "text/plain")
            return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("publishing never recovered")


async def break_redis(bus: Bus) -> None:
    import redis.asyncio as redis

    host, _, port = backends.address("redis").rpartition(":")
    client = redis.Redis(host=host or "127.0.0.1", port=int(port))
    await client.xgroup_destroy(bus.topic, bus.app_id)
    await client.aclose()


async def delete_nats(bus: Bus, what: str) -> None:
    import nats

    connection = await nats.connect(backends.address("nats"))
    js = connection.jetstream()
    stream = safe_name(f"{bus.prefix}-{bus.topic}")
    if what == "stream":
        await js.delete_stream(stream)
    else:
        await js.delete_consumer(stream, safe_name(bus.app_id))
    await connection.close()


async def delete_rabbitmq_queue(bus: Bus) -> str:
    import aio_pika

    connection = await aio_pika.connect(backends.address("rabbitmq"))
    channel = await connection.channel()
    name = f"{bus.app_id}-{bus.topic}"
    await channel.queue_delete(name)
    await connection.close()
    return name


async def rabbitmq_queue_exists(name: str) -> bool:
    import aio_pika

    connection = await aio_pika.connect(backends.address("rabbitmq"))
    try:
        channel = await connection.channel()
        await channel.declare_queue(name, passive=True)
        return True
    except Exception:
        return False
    finally:
        await connection.close()


def take_over_mqtt_client_id(bus: Bus) -> None:
    """Connect with the runtime's MQTT client id (the broker drops the runtime's connection), then leave."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    host, _, port = backends.address("mqtt").split("://")[-1].rpartition(":")
    thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=bus.client_id, protocol=mqtt.MQTTv5)
    thief.connect(host, int(port), clean_start=True)
    thief.loop_start()
    for _ in range(100):
        if thief.is_connected():
            break
        time.sleep(0.05)
    thief.disconnect()
    thief.loop_stop()


async def break_what_the_runtime_created(bus: Bus, how: str) -> None:
    if how == "redis":
        await break_redis(bus)
    elif how in ("nats-consumer", "nats-stream"):
        await delete_nats(bus, how.removeprefix("nats-"))
    elif how == "rabbitmq":
        queue = await delete_rabbitmq_queue(bus)
        # messages published while the queue is missing have nowhere to go: wait for the repair
        for _ in range(200):
            if await rabbitmq_queue_exists(queue):
                break
            await asyncio.sleep(0.1)
    elif how == "mqtt":
        await asyncio.to_thread(take_over_mqtt_client_id, bus)


class HealthWatch:
    """Polls the component's health in the background; remembers whether it was ever down."""

    def __init__(self, bus: Bus) -> None:
        self.bus, self.seen_down = bus, False
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            if not (await self.bus.component.health()).up:
                self.seen_down = True
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.mark.parametrize("how", ["redis", "nats-consumer", "nats-stream", "rabbitmq", "mqtt"])
async def test_every_message_arrives_after_the_broker_side_is_broken(tmp_path: Path, how: str) -> None:
    async with bus_on(how.split("-", maxsplit=1)[0], tmp_path) as bus:
        subscriber = await Subscriber(bus.stub, bus.topic).start()
        await publish(bus.stub, bus.topic, b"before", "text/plain")
        await wait_for(lambda: [e.data for e in subscriber.events] == [b"before"], 30)
        watch = HealthWatch(bus)
        await break_what_the_runtime_created(bus, how)
        expected = [f"after-{i}".encode() for i in range(5)]
        for data in expected:
            await publish_until_accepted(bus, data)
        await wait_for(lambda: set(expected) <= {e.data for e in subscriber.events}, 60)
        for _ in range(200):  # healthy again once repaired
            if (await bus.component.health()).up:
                break
            await asyncio.sleep(0.1)
        assert (await bus.component.health()).up
        await watch.stop()
        assert watch.seen_down, "the repair was not reflected in the component's health"
        await subscriber.stop()


async def test_a_consumer_loop_outlives_any_exception_of_its_step() -> None:
    """The NATS stall of issue 13: nats-py's fetch also raises the builtin TimeoutError, which the
    loop did not expect, and the loop died silently. Whatever a step raises, the loop reports a
    fault (health down), repairs, and goes on."""
    from layotto.server.components.pubsub.consuming import keep_consuming
    from layotto.server.components.pubsub.inmemory import InMemoryPubSub

    pubsub = InMemoryPubSub("bus")
    failures: list[BaseException] = [TimeoutError(), RuntimeError("consumer deleted"), KeyError("x")]
    steps, repairs = [], []
    health_while_broken = []

    async def step() -> bool:
        steps.append(len(steps))
        if failures:
            raise failures.pop(0)
        await asyncio.sleep(0.01)
        return True

    async def repair() -> None:
        health_while_broken.append((await pubsub.health()).up)
        repairs.append(len(repairs))

    loop = asyncio.create_task(keep_consuming(pubsub, "t (group g)", step, repair))
    await wait_for(lambda: len(steps) > 5, 30)
    assert not loop.done(), "the consumer loop stopped"
    assert len(repairs) == 3 and health_while_broken == [False, False, False]
    assert (await pubsub.health()).up, "repaired, the component is healthy again"
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop


async def test_a_disconnect_the_runtime_asked_for_is_not_logged_as_a_lost_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="layotto.server.components.pubsub.mqtt")
    async with bus_on("mqtt", tmp_path) as bus:
        await wait_for(bus.component._renewed.is_set)  # type: ignore[attr-defined]  # connected
    # the runtime stopped: the component closed its connection
    mqtt_records = [r for r in caplog.records if r.name == "layotto.server.components.pubsub.mqtt"]
    assert not [r for r in mqtt_records if r.levelno >= logging.WARNING], [r.getMessage() for r in mqtt_records]
    assert any("disconnected" in r.getMessage() and "closing" in r.getMessage() for r in mqtt_records)


async def test_repaired_is_reported_only_once_a_step_shows_delivery_works(caplog: pytest.LogCaptureFixture) -> None:
    """A step that merely does not fail (an idle fetch that times out, as NATS with nothing to
    fetch) proves nothing: the fault stays reported, and "repaired; delivery resumed" is logged
    only after a step shows delivery works."""
    from layotto.server.components.pubsub.consuming import keep_consuming
    from layotto.server.components.pubsub.inmemory import InMemoryPubSub

    pubsub = InMemoryPubSub("bus")
    answers: list[bool | BaseException] = [RuntimeError("consumer deleted"), False, False, False]
    steps: list[int] = []
    works = asyncio.Event()  # set: the steps show delivery works

    async def step() -> bool:
        steps.append(len(steps))
        if not answers:
            await works.wait()
            await asyncio.sleep(0.01)
            return True
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def repair() -> None:
        return None

    with caplog.at_level(logging.WARNING):
        loop = asyncio.create_task(keep_consuming(pubsub, "t (group g)", step, repair))
        await wait_for(lambda: len(steps) >= 5, 30)  # the fault, three idle steps, one waiting
        assert not (await pubsub.health()).up, "idle steps proved nothing: still being repaired"
        assert "repaired" not in caplog.text
        works.set()
        await wait_for(lambda: len(steps) >= 7, 30)
        assert (await pubsub.health()).up
        assert caplog.text.count("repaired; delivery resumed") == 1
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
