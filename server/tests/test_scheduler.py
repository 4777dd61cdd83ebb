"""Delayed messages (Layotto's DelayQueue) through a scheduler store: published when due,
to a subscriber of the named pub/sub's topic, and kept across a runtime restart (sqlite)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backends
import grpc
import pytest
from test_pubsub import Subscriber, wait_for

from layotto.proto.extension.v1.delay_queue import delay_queue_pb2 as dq
from layotto.proto.extension.v1.delay_queue import delay_queue_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import ComponentContext
from layotto.server.components.loader import load_components
from layotto.server.components.scheduler import ScheduledItem, Scheduler
from layotto.server.config import ComponentConfig
from layotto.server.runtime import scheduler as scheduler_loop
from layotto.server.runtime.publish import Publisher
from layotto.server.runtime.scheduler import DelayQueueService


def config(tmp_path: Path, scheduler: str | None = "sqlite") -> RuntimeConfig:
    components = {"pubsub": {"bus": ComponentConfig("in-memory")}}
    if scheduler == "redis":
        metadata = {"redisHost": backends.address("redis"), "queueName": f"q-{uuid.uuid4().hex[:8]}"}
        components["scheduler"] = {"jobs": ComponentConfig("redis", metadata)}
    elif scheduler == "postgresql":
        metadata = {"connectionString": backends.address("postgresql"), "tableName": f"q_{uuid.uuid4().hex[:8]}"}
        components["scheduler"] = {"jobs": ComponentConfig("postgresql", metadata)}
    elif scheduler == "etcd":
        metadata = {"endpoints": backends.address("etcd"), "keyPrefix": f"q-{uuid.uuid4().hex[:8]}/"}
        components["scheduler"] = {"jobs": ComponentConfig("etcd", metadata)}
    elif scheduler:
        components["scheduler"] = {"jobs": ComponentConfig(scheduler)}
    return RuntimeConfig(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path), components=components
    )


class Client:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.delay = delay_queue_pb2_grpc.DelayQueueStub(channel)
        self.runtime = runtime_pb2_grpc.RuntimeStub(channel)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield Client(channel)


@pytest.fixture(params=["in-memory", "sqlite", "redis", "etcd"])  # postgresql: the lease test below and test_jobs
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    if request.param in ("redis", "etcd"):
        backends.require(request.param)
    async with Runtime(config(tmp_path, request.param)) as started:
        yield started


def delayed(topic: str, data: bytes, delay: int, **fields: object) -> dq.DelayMessageRequest:
    request = dq.DelayMessageRequest(component_name="bus", topic=topic, data=data, delay_in_seconds=delay)
    for name, value in fields.items():
        setattr(request, name, value)
    return request


async def test_a_delayed_message_is_published_to_the_topic_when_due(client: Client) -> None:
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    sub = await Subscriber(client.runtime, topic).start()
    first = await client.delay.PublishDelayMessage(delayed(topic, b'{"n": 1}', 1, data_content_type="application/json"))
    second = await client.delay.PublishDelayMessage(delayed(topic, b"now", 0))
    assert first.message_id and second.message_id and first.message_id != second.message_id
    await wait_for(lambda: len(sub.events) == 2)
    by_type = {event.data_content_type: event for event in sub.events}
    assert json.loads(by_type["application/json"].data) == {"n": 1}
    assert by_type["text/plain"].data == b"now"  # the CloudEvent's default content type
    assert all(event.topic == topic and event.pubsub_name == "bus" for event in sub.events)
    await sub.stop()


async def test_a_message_delayed_through_the_runtime_wakes_its_loop_when_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler loop does not wait out its idle poll (an hour here) for a message delayed through it."""
    monkeypatch.setattr(scheduler_loop, "POLL_SECONDS", 3600.0)
    async with (
        Runtime(config(tmp_path, "in-memory")) as runtime,
        grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel,
    ):
        client = Client(channel)
        topic = f"wake-{uuid.uuid4().hex[:6]}"
        sub = await Subscriber(client.runtime, topic).start()
        await client.delay.PublishDelayMessage(delayed(topic, b"due", 1))
        await wait_for(lambda: len(sub.events) == 1)
        assert sub.events[0].data == b"due"
        await sub.stop()


async def test_each_message_is_published_once(client: Client) -> None:
    topic = f"once-{uuid.uuid4().hex[:6]}"
    sub = await Subscriber(client.runtime, topic).start()
    for n in range(20):
        await client.delay.PublishDelayMessage(delayed(topic, str(n).encode(), n % 2))
    await wait_for(lambda: len(sub.events) >= 20)
    marker = await client.delay.PublishDelayMessage(delayed(topic, b"last", 1))  # fires after all of them
    assert marker.message_id
    await wait_for(lambda: any(event.data == b"last" for event in sub.events))
    assert sorted(event.data for event in sub.events if event.data != b"last") == sorted(
        str(n).encode() for n in range(20)
    )
    await sub.stop()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"delay_in_seconds": -1}, "delay_in_seconds"),
        ({"delay_in_seconds": 2**31 - 1}, "delay_in_seconds"),
        ({"topic": ""}, "topic"),
        ({"component_name": ""}, "component_name"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    client: Client, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        request = delayed("t", b"x", 1)
        for name, value in fields.items():
            setattr(request, name, value)
        await client.delay.PublishDelayMessage(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")


async def test_an_unknown_pubsub_is_not_found(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client.delay.PublishDelayMessage(delayed("t", b"x", 1, component_name="nope"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "component_name" in (raised.value.details() or "")


async def test_without_a_scheduler_the_call_says_so(tmp_path: Path) -> None:
    async with (
        Runtime(config(tmp_path, scheduler=None)) as runtime,
        grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await Client(channel).delay.PublishDelayMessage(delayed("t", b"x", 1))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "scheduler" in (raised.value.details() or "")


async def test_a_pending_message_is_published_after_a_restart(tmp_path: Path) -> None:
    topic = f"restart-{uuid.uuid4().hex[:6]}"
    async with (
        Runtime(config(tmp_path)) as first,
        grpc.aio.insecure_channel(f"127.0.0.1:{first.grpc_port}") as channel,
    ):
        # due well after the restart below (a subscriber must be listening by then: in-memory pub/sub)
        await Client(channel).delay.PublishDelayMessage(delayed(topic, b"kept", 5))
    async with (
        Runtime(config(tmp_path)) as second,
        grpc.aio.insecure_channel(f"127.0.0.1:{second.grpc_port}") as channel,
    ):
        sub = await Subscriber(Client(channel).runtime, topic).start()
        await wait_for(lambda: len(sub.events) == 1, seconds=20)
        assert sub.events[0].data == b"kept"
        await sub.stop()


@pytest.mark.parametrize("store", ["sqlite", "redis", "postgresql", "etcd"])
async def test_an_item_claimed_by_a_crashed_runtime_fires_after_its_lease(tmp_path: Path, store: str) -> None:
    """A runtime that claimed an item and died before firing it: another runtime fires it once the lease ends."""
    if store in ("redis", "postgresql", "etcd"):
        backends.require(store)
    topic = f"crash-{uuid.uuid4().hex[:6]}"
    shared = config(tmp_path, store)
    declared = {
        block: {name: (c.type, c.metadata, c.secret_refs) for name, c in components.items()}
        for block, components in shared.components.items()
    }
    crashed = await load_components(declared, ComponentContext(app_id="crashed", data_dir=tmp_path))
    try:
        service = DelayQueueService(crashed, Publisher(crashed, "crashed", 1 << 20))
        await service.publish_delayed("bus", topic, b"again", content_type="", delay_seconds=0, metadata={})
        scheduler = crashed.find("scheduler", "jobs", "scheduler")
        assert isinstance(scheduler, Scheduler)
        assert len(await scheduler.claim("delay@bus||", time.time(), 2.0, 10)) == 1  # and never acknowledged
    finally:
        await crashed.aclose()
    async with (
        Runtime(shared) as runtime,
        grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel,
    ):
        sub = await Subscriber(Client(channel).runtime, topic).start()
        await wait_for(lambda: len(sub.events) == 1, seconds=20)
        assert sub.events[0].data == b"again"
        await sub.stop()


@pytest.mark.parametrize("store", ["in-memory", "sqlite", "redis", "postgresql", "etcd"])
async def test_the_store_contract_create_get_list_claim_reschedule_ack(tmp_path: Path, store: str) -> None:
    """What jobs rely on, on every store: create only if absent, get and list by prefix, a claim leases
    an item once, and reschedule/ack change it only while it is the one claimed."""
    if store in ("redis", "postgresql", "etcd"):
        backends.require(store)
    declared = {
        block: {name: (c.type, c.metadata, c.secret_refs) for name, c in components.items()}
        for block, components in config(tmp_path, store).components.items()
    }
    loaded = await load_components(declared, ComponentContext(app_id="contract", data_dir=tmp_path))
    try:
        scheduler = loaded.find("scheduler", "jobs", "scheduler")
        assert isinstance(scheduler, Scheduler)
        now = time.time()
        first = ScheduledItem("job@a||one", now - 1, b"1")
        assert await scheduler.create(first) and not await scheduler.create(ScheduledItem(first.key, now, b"x"))
        await scheduler.put(ScheduledItem("job@a||two", now + 60, b"2"))
        await scheduler.put(ScheduledItem("job@ab||other", now - 1, b"3"))
        assert await scheduler.get(first.key) == first and await scheduler.get("job@a||none") is None
        assert sorted(item.key for item in await scheduler.list_prefix("job@a||")) == ["job@a||one", "job@a||two"]
        assert await scheduler.claim("job@a||", now, 30.0, 10) == [first]
        assert await scheduler.claim("job@a||", now, 30.0, 10) == []  # leased: not claimed twice
        following = ScheduledItem(first.key, now - 0.5, b"1'")
        assert await scheduler.reschedule(first, following)
        assert not await scheduler.reschedule(first, ScheduledItem(first.key, now, b"stale"))  # no longer claimed
        assert await scheduler.get(first.key) == following
        assert await scheduler.claim("job@a||", now, 30.0, 10) == [following]  # un-leased by the reschedule
        await scheduler.ack(first)  # stale: the item stays
        assert await scheduler.get(first.key) == following
        await scheduler.put(ScheduledItem(first.key, now - 0.2, b"new"))  # replaces and un-leases
        assert [item.payload for item in await scheduler.claim("job@a||", now, 30.0, 10)] == [b"new"]
        await scheduler.ack(ScheduledItem(first.key, now - 0.2, b"new"))
        assert await scheduler.get(first.key) is None
        assert await scheduler.delete("job@a||two") and not await scheduler.delete("job@a||two")
        assert [item.key for item in await scheduler.claim("job@ab||", now, 30.0, 10)] == ["job@ab||other"]
    finally:
        await loaded.aclose()


@pytest.mark.parametrize("store", ["in-memory", "sqlite", "redis", "postgresql", "etcd"])
async def test_ack_many_removes_a_claimed_batch_but_not_an_item_replaced_since(tmp_path: Path, store: str) -> None:
    """The loop acknowledges a claimed batch in one call: each item goes only while it is the one claimed."""
    if store in ("redis", "postgresql", "etcd"):
        backends.require(store)
    declared = {
        block: {name: (c.type, c.metadata, c.secret_refs) for name, c in components.items()}
        for block, components in config(tmp_path, store).components.items()
    }
    loaded = await load_components(declared, ComponentContext(app_id="batch", data_dir=tmp_path))
    try:
        scheduler = loaded.find("scheduler", "jobs", "scheduler")
        assert isinstance(scheduler, Scheduler)
        now = time.time()
        for n in range(3):
            await scheduler.put(ScheduledItem(f"job@b||{n}", now - 1 + n / 10, f"{n}".encode()))
        await scheduler.put(ScheduledItem("job@b||later", now + 60, b"later"))
        claimed = await scheduler.claim("job@b||", now, 30.0, 10)
        assert [item.key for item in claimed] == ["job@b||0", "job@b||1", "job@b||2"]
        replaced = ScheduledItem("job@b||1", now + 30, b"replaced")
        await scheduler.put(replaced)
        await scheduler.ack_many([])
        await scheduler.ack_many(claimed)
        assert await scheduler.get("job@b||0") is None and await scheduler.get("job@b||2") is None
        assert await scheduler.get("job@b||1") == replaced
        assert sorted(item.key for item in await scheduler.list_prefix("job@b||")) == ["job@b||1", "job@b||later"]
    finally:
        await loaded.aclose()


async def test_a_runtime_claims_only_the_delayed_messages_of_its_own_pubsubs(tmp_path: Path) -> None:
    """Runtimes of other apps share a store: one without pub/sub ``other`` leaves ``other``'s messages
    unclaimed for a runtime that has it; messages stored before the partition by pub/sub still fire."""
    async with (
        Runtime(config(tmp_path, "in-memory")) as runtime,
        grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel,
    ):
        scheduler = runtime.components.find("scheduler", "jobs", "scheduler")
        assert isinstance(scheduler, Scheduler)
        payload = {"topic": "t", "data": "eA==", "contentType": "", "metadata": {}}
        foreign = ScheduledItem("delay@other||m1", time.time(), json.dumps({**payload, "pubsub": "other"}).encode())
        await scheduler.put(foreign)
        sub = await Subscriber(Client(channel).runtime, "t").start()
        legacy = ScheduledItem("delay||m2", time.time(), json.dumps({**payload, "pubsub": "bus"}).encode())
        await scheduler.put(legacy)
        await wait_for(lambda: len(sub.events) == 1)  # the legacy one, polled in the same round as bus's
        assert sub.events[0].data == b"x"
        assert await scheduler.claim("delay@other||", time.time(), 30.0, 10) == [foreign]  # never leased
        await sub.stop()
