"""The Configuration building block: stores (in-memory and etcd) and both wire APIs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aetcd import rpc
from backends import address, require
from server_helpers import start_server
from test_api import call_error, error_info

from layotto.proto.dapr.runtime.v1 import configuration_pb2 as dapr_pb
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import ComponentContext
from layotto.server.components.configuration import ConfigChange, ConfigItem, ConfigurationStore, Scope
from layotto.server.components.loader import ComponentSet, load_components
from layotto.server.config import ComponentConfig
from layotto.server.runtime.validation import MAX_BULK_ITEMS


def store_metadata(type_name: str, namespace: str) -> dict[str, str]:
    if type_name == "etcd":
        require("etcd")
        return {"endpoints": address("etcd"), "keyPrefixPath": f"/layotto-test/{namespace}"}
    if type_name == "redis":
        require("redis")
        return {"redisHost": address("redis"), "keyPrefix": f"layotto-test:{namespace}:"}
    return {}


@pytest.fixture(params=["in-memory", "etcd", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConfigurationStore]:
    metadata = store_metadata(request.param, uuid.uuid4().hex)
    loaded: ComponentSet = await load_components(
        {"config_store": {"c": (request.param, metadata, ())}}, ComponentContext("app", tmp_path)
    )
    found = loaded.find("config_store", "c", "store_name")
    assert isinstance(found, ConfigurationStore)
    yield found
    await loaded.aclose()


APP = Scope("shop")


async def test_save_get_delete_and_versions(store: ConfigurationStore) -> None:
    await store.save([ConfigItem(APP, "color", "red", {"owner": "ui"}), ConfigItem(APP, "size", "10")])
    first = {i.key: i for i in await store.get(APP, ["color", "size", "missing"])}
    assert {k: (i.content, dict(i.tags)) for k, i in first.items()} == {
        "color": ("red", {"owner": "ui"}),
        "size": ("10", {}),
    }
    await store.save([ConfigItem(APP, "color", "blue")])
    (color,) = await store.get(APP, ["color"])
    assert color.content == "blue" and color.version and color.version != first["color"].version
    assert sorted(i.key for i in await store.get(APP, [])) == ["color", "size"]  # no keys: every item
    await store.delete(APP, ["color", "never-there"])
    assert [i.key for i in await store.get(APP, [])] == ["size"]


async def test_items_live_in_their_app_group_and_label(store: ConfigurationStore) -> None:
    scopes = [Scope("shop"), Scope("shop", "blue"), Scope("shop", "default", "canary"), Scope("billing")]
    await store.save([ConfigItem(scope, "k", f"{scope.app_id}/{scope.group}/{scope.label}") for scope in scopes])
    for scope in scopes:
        assert [(i.content, i.scope) for i in await store.get(scope, [])] == [
            (f"{scope.app_id}/{scope.group}/{scope.label}", scope)
        ]


async def test_watch_reports_changes_to_its_keys_only(store: ConfigurationStore) -> None:
    async with store.watch(APP, ["color"]) as color_changes, store.watch(APP, []) as every_change:
        await store.save([ConfigItem(APP, "size", "1"), ConfigItem(APP, "color", "red")])
        await store.delete(APP, ["color"])
        await store.save([ConfigItem(Scope("shop", "other"), "color", "elsewhere")])
        await store.save([ConfigItem(APP, "color", "green")])

        async def next_changes(changes: AsyncIterator[ConfigChange], n: int) -> list[tuple[str, str, bool]]:
            got = [await asyncio.wait_for(anext(changes), 5) for _ in range(n)]
            return [(c.item.key, c.item.content, c.deleted) for c in got]

        assert await next_changes(color_changes, 3) == [
            ("color", "red", False),
            ("color", "", True),
            ("color", "green", False),
        ]
        assert sorted(await next_changes(every_change, 4)) == [
            ("color", "", True),
            ("color", "green", False),
            ("color", "red", False),
            ("size", "1", False),
        ]


async def test_etcd_reads_a_value_written_by_someone_else_as_the_content(tmp_path: Path) -> None:
    namespace = uuid.uuid4().hex
    loaded = await load_components(
        {"config_store": {"c": ("etcd", store_metadata("etcd", namespace), ())}}, ComponentContext("app", tmp_path)
    )
    store = loaded.find("config_store", "c", "store_name")
    assert isinstance(store, ConfigurationStore)
    channel = grpc.aio.insecure_channel(address("etcd"))
    key = f"/layotto-test/{namespace}/shop/default/default/feature".encode()
    await rpc.KVStub(channel).Put(rpc.PutRequest(key=key, value=b"on"))
    (item,) = await store.get(APP, ["feature"])
    assert (item.key, item.content) == ("feature", "on")
    await channel.close()
    await loaded.aclose()


# -- the APIs, on an in-process runtime with the in-memory store -----------------------


@pytest.fixture
async def runtime_with_config(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = RuntimeConfig(
        app_id="shop",
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"config_store": {"config": ComponentConfig("in-memory")}},
    )
    async with Runtime(config) as rt:
        yield rt


def stubs(rt: Runtime) -> tuple[runtime_pb2_grpc.RuntimeStub, dapr_pb2_grpc.DaprStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}")
    return runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)


async def test_layotto_get_save_delete(runtime_with_config: Runtime) -> None:
    layotto, dapr = stubs(runtime_with_config)
    item = pb.ConfigurationItem(key="color", content="red", group="ui", tags={"owner": "web"})
    await layotto.SaveConfiguration(pb.SaveConfigurationRequest(store_name="config", items=[item]))
    got = await layotto.GetConfiguration(pb.GetConfigurationRequest(store_name="config", group="ui", keys=["color"]))
    assert [(i.key, i.content, i.group, i.label, dict(i.tags)) for i in got.items] == [
        ("color", "red", "ui", "default", {"owner": "web"})
    ]
    # Dapr's API sees the runtime's app id, group and label "default"
    await layotto.SaveConfiguration(
        pb.SaveConfigurationRequest(store_name="config", items=[pb.ConfigurationItem(key="size", content="10")])
    )
    got_dapr = await dapr.GetConfiguration(dapr_pb.GetConfigurationRequest(store_name="config"))
    assert {k: v.value for k, v in got_dapr.items.items()} == {"size": "10"} and got_dapr.items["size"].version
    await layotto.DeleteConfiguration(pb.DeleteConfigurationRequest(store_name="config", keys=["size"]))
    assert not (await dapr.GetConfigurationAlpha1(dapr_pb.GetConfigurationRequest(store_name="config"))).items


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("save-empty-key", "items[0].key"),
        ("save-slash-group", "items[0].group"),
        ("get-slash-label", "label"),
        ("get-empty-key", "keys[1]"),
        ("delete-no-keys", "keys"),
        ("unknown-store", "store_name"),
    ],
)
async def test_bad_input_names_the_field(runtime_with_config: Runtime, call: str, field: str) -> None:
    layotto, _ = stubs(runtime_with_config)
    requests = {
        "save-empty-key": layotto.SaveConfiguration(
            pb.SaveConfigurationRequest(store_name="config", items=[pb.ConfigurationItem(key="", content="x")])
        ),
        "save-slash-group": layotto.SaveConfiguration(
            pb.SaveConfigurationRequest(store_name="config", items=[pb.ConfigurationItem(key="k", group="a/b")])
        ),
        "get-slash-label": layotto.GetConfiguration(pb.GetConfigurationRequest(store_name="config", label="x/y")),
        "get-empty-key": layotto.GetConfiguration(pb.GetConfigurationRequest(store_name="config", keys=["a", ""])),
        "delete-no-keys": layotto.DeleteConfiguration(pb.DeleteConfigurationRequest(store_name="config")),
        "unknown-store": layotto.GetConfiguration(pb.GetConfigurationRequest(store_name="nacos")),
    }
    for name, pending in requests.items():
        if name != call:
            pending.cancel()
    error = await call_error(requests[call])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == field and error.details().startswith(f"{field}: ")


async def test_layotto_subscription_reports_current_items_then_changes(runtime_with_config: Runtime) -> None:
    layotto, _ = stubs(runtime_with_config)
    save = pb.SaveConfigurationRequest(store_name="config", items=[pb.ConfigurationItem(key="color", content="red")])
    await layotto.SaveConfiguration(save)
    requests: asyncio.Queue[pb.SubscribeConfigurationRequest | None] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[pb.SubscribeConfigurationRequest]:
        while (request := await requests.get()) is not None:
            yield request

    stream = layotto.SubscribeConfiguration(outgoing())
    await requests.put(pb.SubscribeConfigurationRequest(store_name="config", keys=["color"]))

    async def next_items() -> list[tuple[str, str, dict[str, str]]]:
        response = await asyncio.wait_for(stream.read(), 5)
        assert response.store_name == "config" and response.app_id == "shop"
        return [(i.key, i.content, dict(i.metadata)) for i in response.items]

    assert await next_items() == [("color", "red", {})]
    await layotto.SaveConfiguration(
        pb.SaveConfigurationRequest(store_name="config", items=[pb.ConfigurationItem(key="color", content="blue")])
    )
    assert await next_items() == [("color", "blue", {})]
    await layotto.DeleteConfiguration(pb.DeleteConfigurationRequest(store_name="config", keys=["color"]))
    assert await next_items() == [("color", "", {"deleted": "true"})]
    await requests.put(pb.SubscribeConfigurationRequest(store_name="nacos"))  # a bad request ends the stream
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(stream.read(), 5)
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_dapr_subscription_id_first_then_changes_until_unsubscribed(runtime_with_config: Runtime) -> None:
    layotto, dapr = stubs(runtime_with_config)
    stream = dapr.SubscribeConfigurationAlpha1(
        dapr_pb.SubscribeConfigurationRequest(store_name="config", keys=["flag"])
    )
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.id and not first.items
    await layotto.SaveConfiguration(
        pb.SaveConfigurationRequest(store_name="config", items=[pb.ConfigurationItem(key="flag", content="on")])
    )
    change = await asyncio.wait_for(stream.read(), 5)
    assert change.id == first.id and change.items["flag"].value == "on"
    unknown = await dapr.UnsubscribeConfiguration(
        dapr_pb.UnsubscribeConfigurationRequest(store_name="config", id="nope")
    )
    assert not unknown.ok and "nope" in unknown.message
    done = await dapr.UnsubscribeConfiguration(
        dapr_pb.UnsubscribeConfigurationRequest(store_name="config", id=first.id)
    )
    assert done.ok
    assert await asyncio.wait_for(stream.read(), 5) is grpc.aio.EOF  # type: ignore[attr-defined]


def pending_queue_gets() -> list[asyncio.Task[Any]]:
    """The event loop's tasks waiting on an asyncio.Queue (what a stream's consumer waits in)."""
    return [task for task in asyncio.all_tasks() if getattr(task.get_coro(), "__qualname__", "") == "Queue.get"]


async def test_a_dapr_subscription_its_client_cancels_leaves_no_task_behind(runtime_with_config: Runtime) -> None:
    """The client goes away while the stream waits for a change: the wait for the next change ends
    with it (it was left pending on the queue, one task and queue per cancelled stream, forever)."""
    layotto, dapr = stubs(runtime_with_config)
    configuration = runtime_with_config.services.configuration  # type: ignore[union-attr]
    for _ in range(3):
        stream = dapr.SubscribeConfiguration(dapr_pb.SubscribeConfigurationRequest(store_name="config", keys=["k"]))
        assert (await asyncio.wait_for(stream.read(), 5)).id
        save = pb.SaveConfigurationRequest(store_name="config", items=[pb.ConfigurationItem(key="k", content="v")])
        await layotto.SaveConfiguration(save)
        assert (await asyncio.wait_for(stream.read(), 5)).items["k"].value == "v"  # waiting for the next one now
        stream.cancel()
    for _ in range(500):  # the handlers end as the cancellations reach the server
        if not configuration._subscriptions:
            break
        await asyncio.sleep(0.01)
    assert not configuration._subscriptions
    await asyncio.sleep(0.05)  # the cancelled handlers' own cancellations run
    assert pending_queue_gets() == []


@pytest.mark.parametrize("backend", ["etcd", "redis"])
async def test_a_change_saved_through_one_runtime_reaches_subscribers_of_the_others(
    tmp_path: Path, backend: str
) -> None:
    """Three `layotto serve` processes on one store: a subscriber on each sees a save made through another."""
    namespace = uuid.uuid4().hex[:10]
    config = {
        "app_id": "shop",
        "config_store": {"shared": {"type": backend, "metadata": store_metadata(backend, namespace)}},
    }
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(config))
    servers = [start_server("-c", str(path), data_dir=tmp_path / f"rt{i}") for i in range(3)]
    try:
        channels = [grpc.aio.insecure_channel(s.grpc_address) for s in servers]
        streams = [
            dapr_pb2_grpc.DaprStub(c).SubscribeConfiguration(
                dapr_pb.SubscribeConfigurationRequest(store_name="shared", keys=["flag"])
            )
            for c in channels
        ]
        for stream in streams:
            assert (await asyncio.wait_for(stream.read(), 10)).id
        writer = runtime_pb2_grpc.RuntimeStub(channels[0])
        for value in ("on", "off"):
            await writer.SaveConfiguration(
                pb.SaveConfigurationRequest(
                    store_name="shared", items=[pb.ConfigurationItem(key="flag", content=value)]
                )
            )
            for stream in streams:
                assert (await asyncio.wait_for(stream.read(), 10)).items["flag"].value == value
        await writer.DeleteConfiguration(pb.DeleteConfigurationRequest(store_name="shared", keys=["flag"]))
        for stream in streams:
            deleted = (await asyncio.wait_for(stream.read(), 10)).items["flag"]
            assert (deleted.value, dict(deleted.metadata)) == ("", {"deleted": "true"})
        for channel in channels:
            await channel.close()
    finally:
        for server in servers:
            code, stderr = server.terminate()
            assert code == 0, stderr


async def test_redis_watches_do_not_take_the_connections_reads_need(tmp_path: Path) -> None:
    metadata = {**store_metadata("redis", uuid.uuid4().hex), "poolSize": "2"}
    loaded = await load_components({"config_store": {"c": ("redis", metadata, ())}}, ComponentContext("app", tmp_path))
    store = loaded.find("config_store", "c", "store_name")
    assert isinstance(store, ConfigurationStore)
    async with contextlib.AsyncExitStack() as watches:
        for _ in range(5):  # more watches than the pool has connections
            await watches.enter_async_context(store.watch(APP, ["k"]))
        await asyncio.wait_for(store.save([ConfigItem(APP, "k", "v")]), 5)
        assert [i.content for i in await asyncio.wait_for(store.get(APP, ["k"]), 5)] == ["v"]
    await loaded.aclose()


async def test_item_and_key_counts_are_capped_like_state(runtime_with_config: Runtime) -> None:
    layotto, dapr = stubs(runtime_with_config)
    over = MAX_BULK_ITEMS + 1  # 20,000 items or keys were taken, while state and bulk publish stop at 10,000
    many = [pb.ConfigurationItem(key=f"k{i}", content="x") for i in range(over)]
    error = await call_error(layotto.SaveConfiguration(pb.SaveConfigurationRequest(store_name="config", items=many)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("items: ")
    assert f"limit of {MAX_BULK_ITEMS}" in error.details()
    got = await layotto.GetConfiguration(pb.GetConfigurationRequest(store_name="config", keys=["k0"]))
    assert list(got.items) == []  # nothing of the refused request was saved
    keys = [f"k{i}" for i in range(over)]
    calls = [
        layotto.GetConfiguration(pb.GetConfigurationRequest(store_name="config", keys=keys)),
        layotto.DeleteConfiguration(pb.DeleteConfigurationRequest(store_name="config", keys=keys)),
        dapr.GetConfiguration(dapr_pb.GetConfigurationRequest(store_name="config", keys=keys)),
        dapr.SubscribeConfiguration(dapr_pb.SubscribeConfigurationRequest(store_name="config", keys=keys)).read(),
    ]
    for pending in calls:
        error = await call_error(pending)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(error).metadata["field"] == "keys"
    at_limit = many[:MAX_BULK_ITEMS]
    await layotto.SaveConfiguration(pb.SaveConfigurationRequest(store_name="config", items=at_limit))
    got = await layotto.GetConfiguration(pb.GetConfigurationRequest(store_name="config", keys=keys[:MAX_BULK_ITEMS]))
    assert len(got.items) == MAX_BULK_ITEMS
