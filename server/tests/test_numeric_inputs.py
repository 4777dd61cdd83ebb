"""Every number a client sends outside the State API is range-checked: Pub/Sub TTLs and delivery
attempts (on every broker), lock expiries, sequencer options and component metadata, Dapr's
SetMetadata attributes. Refusals are INVALID_ARGUMENT naming the field; nothing is INTERNAL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import backends
import grpc
import pytest
from test_api import call_error
from test_state_limits import assert_invalid, random_key

from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, metadata_pb2
from layotto.proto.dapr.runtime.v1 import lock_pb2 as dapr_lock
from layotto.proto.dapr.runtime.v1 import pubsub_pb2 as dapr_pubsub
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import ConfigError
from layotto.server.components.registry import registry_for
from layotto.server.config import ComponentConfig
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.keys import namespaced_key
from layotto.server.runtime.metadata import MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_ATTRIBUTES_BYTES
from layotto.server.runtime.validation import MAX_BULK_ITEMS, MAX_TTL_SECONDS, parse_max_delivery_attempts

ISSUE_TTL = "300000000000"


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.layotto = runtime_pb2_grpc.RuntimeStub(channel)
        self.dapr = dapr_pb2_grpc.DaprStub(channel)


@pytest.fixture(params=["in-memory", *backends.REAL_BROKERS])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stubs]:
    if request.param != "in-memory":
        backends.require(request.param)
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        components={"pubsub": {"bus": ComponentConfig(request.param, backends.pubsub_metadata(request.param))}},
    )
    async with Runtime(config) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        await wait_ready(runtime)
        yield Stubs(channel)


async def wait_ready(runtime: Runtime) -> None:
    """Until readiness is UP, as a client would wait: the MQTT component reports its CONNACK after start."""
    url = f"http://127.0.0.1:{runtime.http_port}/actuator/health/readiness"
    deadline = asyncio.get_running_loop().time() + 15
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url) as response:
                if response.status == 200:
                    return
            assert asyncio.get_running_loop().time() < deadline, "the runtime did not become ready in 15 s"
            await asyncio.sleep(0.05)


@pytest.fixture
async def stubs(runtime: Runtime) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield Stubs(channel)


# -- Pub/Sub ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [ISSUE_TTL, "12345678901234567890", str(MAX_TTL_SECONDS + 1), "0", "1.5"])
async def test_publish_ttl_out_of_range_is_refused(bus: Stubs, ttl: str) -> None:
    publish = pb.PublishEventRequest(pubsub_name="bus", topic="t", data=b"x", metadata={"ttlInSeconds": ttl})
    assert_invalid(await call_error(bus.layotto.PublishEvent(publish)), "metadata.ttlInSeconds")
    raw = {"ttlInSeconds": ttl, "rawPayload": "true"}
    publish = pb.PublishEventRequest(pubsub_name="bus", topic="t", data=b"x", metadata=raw)
    assert_invalid(await call_error(bus.layotto.PublishEvent(publish)), "metadata.ttlInSeconds")
    entry = dapr_pubsub.BulkPublishRequestEntry(entry_id="1", event=b"x", metadata={"ttlInSeconds": ttl})
    bulk = dapr_pubsub.BulkPublishRequest(pubsub_name="bus", topic="t", entries=[entry])
    assert_invalid(await call_error(bus.dapr.BulkPublishEventAlpha1(bulk)), "entries[0].metadata.ttlInSeconds")
    bulk = dapr_pubsub.BulkPublishRequest(
        pubsub_name="bus",
        topic="t",
        entries=[dapr_pubsub.BulkPublishRequestEntry(entry_id="1", event=b"x")],
        metadata={"ttlInSeconds": ttl},
    )
    assert_invalid(await call_error(bus.dapr.BulkPublishEventAlpha1(bulk)), "metadata.ttlInSeconds")


@pytest.mark.parametrize("ttl", ["-1", "1", str(MAX_TTL_SECONDS)])
async def test_publish_ttls_in_range_are_served(bus: Stubs, ttl: str) -> None:
    for raw in ("false", "true"):
        metadata = {"ttlInSeconds": ttl, "rawPayload": raw}
        await bus.layotto.PublishEvent(
            pb.PublishEventRequest(pubsub_name="bus", topic="t", data=b"x", metadata=metadata)
        )


async def first_answer(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    return caught.value


@pytest.mark.parametrize("attempts", ["0", "1001", "99999999999999999999", "x"])
async def test_subscription_delivery_attempts_out_of_range_are_refused(bus: Stubs, attempts: str) -> None:
    metadata = {"maxDeliveryAttempts": attempts}
    initial = pb.SubscribeTopicEventsRequest(
        initial_request=pb.SubscribeTopicEventsRequestInitial(pubsub_name="bus", topic="t", metadata=metadata)
    )
    call = bus.layotto.SubscribeTopicEvents(iter([initial]))
    assert_invalid(await first_answer(call), "initial_request.metadata.maxDeliveryAttempts", "between 1 and 1000")
    dapr_initial = dapr_pubsub.SubscribeTopicEventsRequestAlpha1(
        initial_request=dapr_pubsub.SubscribeTopicEventsRequestInitialAlpha1(
            pubsub_name="bus", topic="t", metadata=metadata
        )
    )
    call = bus.dapr.SubscribeTopicEventsAlpha1(iter([dapr_initial]))
    assert_invalid(await first_answer(call), "initial_request.metadata.maxDeliveryAttempts")


@pytest.mark.parametrize("raw", [" 5", "5 ", "\t5", "5\n", " -1", "-1 ", "+5", "\uff15"])
async def test_numbers_in_metadata_are_plain_digits(stubs: Stubs, raw: str) -> None:
    state = pb.StateItem(key="k", value=b"v", metadata={"ttlInSeconds": raw})  # " 5" was taken, "+5" refused
    save = pb.SaveStateRequest(store_name="in-memory", states=[state])
    assert_invalid(await call_error(stubs.layotto.SaveState(save)), "states[0].metadata.ttlInSeconds")
    publish = pb.PublishEventRequest(pubsub_name="in-memory", topic="t", data=b"x", metadata={"ttlInSeconds": raw})
    assert_invalid(await call_error(stubs.layotto.PublishEvent(publish)), "metadata.ttlInSeconds")
    initial = pb.SubscribeTopicEventsRequestInitial(
        pubsub_name="in-memory", topic="t", metadata={"maxDeliveryAttempts": raw.replace("-1", "1")}
    )
    call = stubs.layotto.SubscribeTopicEvents(iter([pb.SubscribeTopicEventsRequest(initial_request=initial)]))
    assert_invalid(await first_answer(call), "initial_request.metadata.maxDeliveryAttempts")


@pytest.mark.parametrize("raw", [" 5", "+5", "\u00b2", "0", "1001"])  # "\u00b2".isdigit() then int() raised ValueError
def test_app_subscription_delivery_attempts_are_plain_digits_in_range(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_max_delivery_attempts({"maxDeliveryAttempts": raw}, "subscription.metadata", 5)
    assert caught.value.field == "subscription.metadata.maxDeliveryAttempts"


# -- Lock, Sequencer ----------------------------------------------------------------------------


@pytest.mark.parametrize("expire", [0, -1, 7 * 24 * 3600 + 1, 2**31 - 1])
async def test_lock_expiry_out_of_range_is_refused(stubs: Stubs, expire: int) -> None:
    request = pb.TryLockRequest(store_name="in-memory", resource_id="r", lock_owner="o", expire=expire)
    assert_invalid(await call_error(stubs.layotto.TryLock(request)), "expire", "between 1 and 604800")
    keep = pb.LockKeepAliveRequest(store_name="in-memory", resource_id="r", lock_owner="o", expire=expire)
    assert_invalid(await call_error(stubs.layotto.LockKeepAlive(keep)), "expire")
    dapr = dapr_lock.TryLockRequest(store_name="in-memory", resource_id="r", lock_owner="o", expiry_in_seconds=expire)
    assert_invalid(await call_error(stubs.dapr.TryLockAlpha1(dapr)), "expiry_in_seconds")


async def test_unknown_sequencer_increment_is_refused(stubs: Stubs) -> None:
    options = pb.SequencerOptions(increment=5)  # type: ignore[arg-type]
    request = pb.GetNextIdRequest(store_name="in-memory", key="k", options=options)
    assert_invalid(await call_error(stubs.layotto.GetNextId(request)), "options.increment", "unknown value 5")
    strong = pb.SequencerOptions(increment=pb.SequencerOptions.STRONG)
    assert (await stubs.layotto.GetNextId(pb.GetNextIdRequest(store_name="in-memory", key="k", options=strong))).next_id


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"segmentSize": "0"}, "segmentSize"),
        ({"segmentSize": "1000001"}, "segmentSize"),
        ({"segmentSize": "nan"}, "segmentSize"),
        ({"biggerThan": '{"k": 9223372036854775807}'}, "biggerThan.k"),
        ({"biggerThan": '{"k": -1}'}, "biggerThan.k"),
    ],
)
def test_sequencer_metadata_out_of_range_is_a_config_error(metadata: dict[str, str], field: str) -> None:
    spec = registry_for("sequencer").spec("in-memory")
    with pytest.raises(ConfigError, match=rf"^sequencer\.s\.metadata\.{field}: must be between|expected a number"):
        spec.parse_metadata(metadata, "sequencer.s.metadata")


# -- Dapr SetMetadata ---------------------------------------------------------------------------


async def test_set_metadata_is_bounded(stubs: Stubs) -> None:
    dapr = stubs.dapr

    async def set_attribute(key: str, value: str) -> None:
        await dapr.SetMetadata(metadata_pb2.SetMetadataRequest(key=key, value=value))

    assert_invalid(await call_error(set_attribute("k" * 257, "v")), "key", "256-byte limit")
    too_big = "v" * (MAX_ATTRIBUTE_VALUE_BYTES + 1)
    assert_invalid(await call_error(set_attribute("k", too_big)), "value", f"{MAX_ATTRIBUTE_VALUE_BYTES}-byte limit")
    big = "v" * MAX_ATTRIBUTE_VALUE_BYTES
    count = MAX_ATTRIBUTES_BYTES // (MAX_ATTRIBUTE_VALUE_BYTES + 8)
    for i in range(count):
        await set_attribute(f"a{i}", big)
    assert_invalid(await call_error(set_attribute("one-more", big)), "value", f"{MAX_ATTRIBUTES_BYTES}-byte limit")
    await set_attribute("a0", "small")  # replacing one makes room again
    await set_attribute("one-more", big)
    await set_attribute("a0", "small")
    for i in range(count + 1, MAX_ATTRIBUTES):
        await set_attribute(f"b{i}", "")
    assert len((await dapr.GetMetadata(metadata_pb2.GetMetadataRequest())).extended_metadata) == MAX_ATTRIBUTES + 2
    assert_invalid(await call_error(set_attribute("last", "")), "key", str(MAX_ATTRIBUTES))
    await set_attribute("a0", "replaced")  # an attribute already held may still change
    found = (await dapr.GetMetadata(metadata_pb2.GetMetadataRequest())).extended_metadata
    assert found["a0"] == "replaced" and found["runtime"] == "layotto-python"


# -- bulk sizes ---------------------------------------------------------------------------------


async def test_bulk_requests_are_bounded(stubs: Stubs) -> None:
    layotto = stubs.layotto
    items = [pb.StateItem(key=f"k{i}", value=b"v") for i in range(MAX_BULK_ITEMS + 1)]
    too_many = pb.SaveStateRequest(store_name="in-memory", states=items)
    assert_invalid(await call_error(layotto.SaveState(too_many)), "states", f"limit of {MAX_BULK_ITEMS}")
    keys = [f"k{i}" for i in range(MAX_BULK_ITEMS + 1)]
    bulk_get = pb.GetBulkStateRequest(store_name="in-memory", keys=keys)
    assert_invalid(await call_error(layotto.GetBulkState(bulk_get)), "keys")
    bulk_delete = pb.DeleteBulkStateRequest(store_name="in-memory", states=items)
    assert_invalid(await call_error(layotto.DeleteBulkState(bulk_delete)), "states")
    ops = [pb.TransactionalStateOperation(operationType="upsert", request=item) for item in items]
    transaction = pb.ExecuteStateTransactionRequest(storeName="in-memory", operations=ops)
    assert_invalid(await call_error(layotto.ExecuteStateTransaction(transaction)), "operations")
    entries = [dapr_pubsub.BulkPublishRequestEntry(entry_id=str(i), event=b"x") for i in range(MAX_BULK_ITEMS + 1)]
    publish = dapr_pubsub.BulkPublishRequest(pubsub_name="in-memory", topic="t", entries=entries)
    assert_invalid(await call_error(stubs.dapr.BulkPublishEventAlpha1(publish)), "entries")
    await layotto.SaveState(pb.SaveStateRequest(store_name="in-memory", states=items[:MAX_BULK_ITEMS]))
    got = await layotto.GetBulkState(pb.GetBulkStateRequest(store_name="in-memory", keys=keys[:MAX_BULK_ITEMS]))
    assert len(got.items) == MAX_BULK_ITEMS and got.items[-1].data == b"v"


# -- lock and sequencer keys beyond a store's limit ---------------------------------------------


@pytest.mark.parametrize(
    ("block", "backend"), [("lock", "postgresql"), ("sequencer", "postgresql"), ("sequencer", "mysql")]
)
async def test_lock_and_sequencer_keys_up_to_the_store_limit(block: str, backend: str, tmp_path: Path) -> None:
    backends.require(backend)
    metadata = backends.lock_metadata(backend, uuid.uuid4().hex[:12])
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id="app",
        components={block: {"s": ComponentConfig(backend, metadata)}},
    )
    limit = registry_for(block).spec(backend).limits.max_key_bytes
    assert limit is not None
    room = limit - len(namespaced_key(block, "appid", "app", "s", ""))  # the namespace counts
    async with Runtime(config) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        layotto = runtime_pb2_grpc.RuntimeStub(channel)

        async def use(key: str) -> object:
            if block == "lock":
                request = pb.TryLockRequest(store_name="s", resource_id=key, lock_owner="o", expire=10)
                return await layotto.TryLock(request)
            return await layotto.GetNextId(pb.GetNextIdRequest(store_name="s", key=key))

        assert await use(random_key(room))
        field = "resource_id" if block == "lock" else "key"
        assert_invalid(await call_error(use(random_key(room + 1))), field, f"{limit}-byte limit", backend)


@pytest.mark.parametrize("store_type", ["in-memory", "sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("interval", ["0", "-5", "inf", "nan", "1e9"])
def test_state_cleanup_interval_out_of_range_is_a_config_error(store_type: str, interval: str) -> None:
    spec = registry_for("state").spec(store_type)
    base = {"connectionString": "x"} if store_type in ("postgresql", "mysql") else {}
    with pytest.raises(ConfigError, match=r"^state\.s\.metadata\.cleanupIntervalInSeconds: "):
        spec.parse_metadata({**base, "cleanupIntervalInSeconds": interval}, "state.s.metadata")
    assert spec.parse_metadata({**base, "cleanupIntervalInSeconds": "0.5"}, "m")["cleanupIntervalInSeconds"] == 0.5
