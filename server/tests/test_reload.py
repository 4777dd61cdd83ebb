"""Live reconfiguration: Layotto's Lifecycle/ApplyConfiguration and config hot reload, on one
in-process runtime each, against a real Redis (swap a store under load, refuse bad changes)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import backends
import grpc
import pytest
import yaml
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2
from server_helpers import start_server

from layotto.client import NO_RETRY, NoComponentsConfigured, RuntimeClient, StoreNotFound
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, metadata_pb2
from layotto.proto.runtime.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from layotto.server import Runtime
from layotto.server.components.base import ConfigError
from layotto.server.components.inflight import drain, track_calls
from layotto.server.config import load

WORKERS = 12
POLL_SECONDS = 0.05


def redis_metadata(prefix: str) -> dict[str, str]:
    """A Redis state store's metadata, its keys under ``prefix``."""
    backends.require("redis")
    return {"redisHost": backends.address("redis"), "keyPrefix": prefix}


def write_config(path: Path, data_dir: Path, components: dict[str, Any], **extra: Any) -> None:
    body = {
        "grpc_address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0",
        "data_dir": str(data_dir),
        "hot_reload": True,
        "hot_reload_seconds": POLL_SECONDS,
        "shutdown_grace_seconds": 5,
        **extra,
        **components,
    }
    path.write_text(yaml.safe_dump(body))


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[Runtime]]]:
    """Starts a runtime from a config file at tmp_path/runtime.yaml with the given components."""
    runtimes: list[Runtime] = []

    async def start(components: dict[str, Any]) -> Runtime:
        write_config(tmp_path / "runtime.yaml", tmp_path / "data", components)
        runtime = Runtime(load(tmp_path / "runtime.yaml"))
        await runtime.start()
        runtimes.append(runtime)
        return runtime

    yield start
    for runtime in runtimes:
        await runtime.stop(grace=2)


async def apply(runtime: Runtime, kind: str, name: str, metadata: dict[str, str]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        config = lifecycle_pb2.ComponentConfig(kind=kind, name=name, metadata=metadata)
        await lifecycle_pb2_grpc.LifecycleStub(channel).ApplyConfiguration(
            lifecycle_pb2.DynamicConfiguration(component_config=config), timeout=30
        )


def error_field(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a refused call."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return {"reason": info.reason, **info.metadata}
    return {}


async def component_names(runtime: Runtime) -> set[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        answer = await dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=5)
    return {c.name for c in answer.registered_components}


async def http_component_names(runtime: Runtime) -> set[str]:
    def read() -> set[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{runtime.http_port}/v1.0/metadata", timeout=5) as response:
            return {c["name"] for c in json.load(response)["components"]}

    return await asyncio.to_thread(read)  # the runtime serves on this same event loop


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        await asyncio.sleep(POLL_SECONDS)


# -- ApplyConfiguration ---------------------------------------------------------------------------


def store_setting(backend: str, namespace: str, second: bool) -> dict[str, str]:
    """The metadata keys that move a store to another namespace (Redis: another DB too)."""
    if backend == "redis":
        return {"keyPrefix": f"{namespace}:", "redisDB": "1" if second else "0"}
    return {"tableName": f"state_{namespace}"}


async def test_apply_configuration_swaps_a_redis_store_under_load_without_a_failed_call(started: Any) -> None:
    """Changing the key prefix and the DB while calls run: none fails, new calls see the new
    setting, and applying the old setting back shows the data was only behind the other prefix.
    (Redis's client closes gracefully: test_drain_waits_for_the_calls_under_way covers the drain.)"""
    backend = "redis"
    backends.require(backend)
    old, new = f"a{uuid.uuid4().hex}", f"b{uuid.uuid4().hex}"
    metadata = {**backends.state_metadata(backend, old), **store_setting(backend, old, second=False)}
    runtime = await started({"state": {"cache": {"type": backend, "metadata": metadata}}})
    async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY, timeout=10) as client:
        await client.state.save("cache", "marker", b"old")
        stop = asyncio.Event()
        done = [0]

        async def worker(i: int) -> None:
            while not stop.is_set():
                await client.state.save("cache", f"load-{i}", str(done[0]).encode())
                await client.state.get("cache", f"load-{i}")
                done[0] += 1

        load = [asyncio.create_task(worker(i)) for i in range(WORKERS)]
        await until(lambda: _at_least(done, 50), "calls under way")
        await apply(runtime, "state", "cache", store_setting(backend, new, second=True))
        before = done[0]
        await until(lambda: _at_least(done, before + 50), "calls on the new instance")
        stop.set()
        await asyncio.gather(*load)  # a failed call raises here

        assert not (await client.state.get("cache", "marker")).found  # the new namespace
        await client.state.save("cache", "marker", b"new")
        await apply(runtime, "state", "cache", store_setting(backend, old, second=False))
        assert (await client.state.get("cache", "marker")).value == b"old"


async def _at_least(counter: list[int], wanted: int) -> bool:
    return counter[0] >= wanted


async def test_a_call_inside_the_old_instance_finishes_before_it_is_closed(started: Any) -> None:
    """An HTTP output binding's request under way when its URL changes: the new instance serves the
    next call, the old one is closed only once the slow request answered (closing its session
    earlier would fail that call), and then it is closed."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        if request.path.endswith("/slow"):
            arrived.set()
            await release.wait()
        return web.Response(text=request.path)

    server = web.Server(answer)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        runtime = await started({"bindings": {"web": {"type": "http", "metadata": {"url": f"{base}/old"}}}})
        old = runtime.components.get("bindings", "web")
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY, timeout=10) as client:
            slow = asyncio.create_task(client.bindings.invoke("web", "get", metadata={"path": "slow"}))
            await arrived.wait()
            await apply(runtime, "bindings", "web", {"url": f"{base}/new"})
            assert (await client.bindings.invoke("web", "get")).data == b"/new"
            assert old is not None and not old._session.closed  # type: ignore[attr-defined]
            release.set()
            assert (await slow).data == b"/old/slow"

            async def closed() -> bool:
                return bool(old._session.closed)  # type: ignore[attr-defined]

            await until(closed, "the old instance is closed once drained")
    finally:
        await runner.cleanup()


async def test_a_bad_apply_is_refused_naming_the_field_and_the_old_instance_keeps_serving(started: Any) -> None:
    prefix = f"p-{uuid.uuid4().hex}:"
    runtime = await started(
        {
            "state": {"cache": {"type": "redis", "metadata": redis_metadata(prefix)}},
            "pubsub": {"events": {"type": "in-memory"}},
        }
    )
    async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY, timeout=10) as client:
        await client.state.save("cache", "k", b"v")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await apply(runtime, "state", "cache", {"redisDB": "seven"})
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'cache'" in (refused.value.details() or "")
        assert error_field(refused.value)["field"] == "component_config.metadata.redisDB"

        with pytest.raises(grpc.aio.AioRpcError) as unreachable:  # init fails: nothing listens there
            await apply(runtime, "state", "cache", {"redisHost": "127.0.0.1:1"})
        assert unreachable.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cache" in (unreachable.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await apply(runtime, "state", "nope", {"keyPrefix": "x"})
        assert error_field(unknown.value) == {
            "reason": "COMPONENT_NOT_FOUND",
            "field": "component_config.name",
            "component": "nope",
        }
        with pytest.raises(grpc.aio.AioRpcError) as held:  # subscriptions hold a pub/sub instance
            await apply(runtime, "pub_subs", "events", {"x": "y"})
        assert held.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "restart" in (held.value.details() or "")

        assert (await client.state.get("cache", "k")).value == b"v"  # the old instance still serves


async def test_apply_configuration_changes_layottos_helloworld_greeting(started: Any) -> None:
    runtime = await started({"hellos": {"helloworld": {"type": "helloworld", "metadata": {"hello": "greetings"}}}})
    async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY) as client:
        assert (await client.say_hello("ann", service="helloworld")).greeting.startswith("greetings")
        await apply(runtime, "hellos", "helloworld", {"hello": "bonjour"})
        assert (await client.say_hello("ann", service="helloworld")).greeting.startswith("bonjour")


async def test_a_replaced_component_is_collectable_again_after_the_start_up_freeze(started: Any) -> None:
    """serve() freezes start-up's objects (gc.freeze); a component swapped out must not stay frozen."""
    runtime = await started({"hellos": {"helloworld": {"type": "helloworld", "metadata": {"hello": "hi"}}}})
    gc.freeze()  # what serve() does once started
    try:
        assert gc.get_freeze_count() > 0
        await apply(runtime, "hellos", "helloworld", {"hello": "bonjour"})

        async def unfrozen() -> bool:
            return gc.get_freeze_count() == 0

        await until(unfrozen, "the old instance retired and the heap unfrozen")
    finally:
        gc.unfreeze()


# -- hot reload -------------------------------------------------------------------------------------


async def test_hot_reload_adds_changes_and_removes_components_and_refuses_broken_files(
    started: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="layotto.server")
    first, second = f"h1-{uuid.uuid4().hex}:", f"h2-{uuid.uuid4().hex}:"
    base = {"state": {"main": {"type": "in-memory"}}}
    runtime = await started(base)
    config = tmp_path / "runtime.yaml"
    async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY, timeout=10) as client:
        await client.state.save("main", "k", b"kept")

        async def listed(name: str, present: bool = True) -> bool:
            return (name in await component_names(runtime)) is present

        with_cache = {"state": {**base["state"], "cache": {"type": "redis", "metadata": redis_metadata(first)}}}
        write_config(config, tmp_path / "data", with_cache)  # added
        await until(lambda: listed("cache"), "GetMetadata lists the added store")
        assert "cache" in await http_component_names(runtime)
        await client.state.save("cache", "x", b"1")
        assert (await client.state.get("cache", "x")).value == b"1"

        with_cache["state"]["cache"]["metadata"] = redis_metadata(second)  # changed
        write_config(config, tmp_path / "data", with_cache)

        async def swapped() -> bool:
            return not (await client.state.get("cache", "x")).found

        await until(swapped, "the changed store serves with the new prefix")

        config.write_text("state: {main: [unclosed\n")  # broken YAML
        await until(lambda: _logged(caplog, "hot reload refused"), "the refusal is logged")
        broken = [{"state": {"cache": {"type": "no-such-type"}}}]  # an unknown type
        write_config(config, tmp_path / "data", broken[0])
        await until(lambda: _logged(caplog, "hot reload refused", 2), "the unknown type is refused")
        assert (await client.state.get("main", "k")).value == b"kept"  # the old configuration serves
        assert await component_names(runtime) >= {"main", "cache"}

        write_config(config, tmp_path / "data", base, app_id="renamed")  # removed; app_id needs a restart
        await until(lambda: listed("cache", present=False), "GetMetadata no longer lists the removed store")
        assert "cache" not in await http_component_names(runtime)
        with pytest.raises(StoreNotFound):
            await client.state.get("cache", "x")
        assert (await client.state.get("main", "k")).value == b"kept"  # untouched by every reload

    refusals = [r for r in caplog.records if "hot reload refused" in r.getMessage()]
    assert len(refusals) == 2, [r.getMessage() for r in refusals]  # one line per bad change
    assert all(r.levelno == logging.ERROR for r in refusals)
    assert "not valid YAML" in refusals[0].getMessage()
    assert "state.cache.type" in refusals[1].getMessage()
    assert any("app_id" in r.getMessage() and "restart" in r.getMessage() for r in caplog.records)


async def test_hot_reload_follows_the_manifests_directory(started: Any, tmp_path: Path) -> None:
    """A Dapr manifest written into components_path is served; its file removed, it is gone."""
    manifests = tmp_path / "components"
    manifests.mkdir()
    write_config(tmp_path / "runtime.yaml", tmp_path / "data", {}, components_path=str(manifests))
    runtime = Runtime(load(tmp_path / "runtime.yaml"))
    await runtime.start()
    try:
        manifest = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "orders"},
            "spec": {"type": "state.in-memory", "version": "v1", "metadata": []},
        }
        (manifests / "orders.yaml").write_text(yaml.safe_dump(manifest))

        async def listed(present: bool) -> bool:
            return ("orders" in await component_names(runtime)) is present

        await until(lambda: listed(True), "the manifest's component is served")
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}", retry=NO_RETRY) as client:
            await client.state.save("orders", "o1", b"x")
            (manifests / "orders.yaml").unlink()
            await until(lambda: listed(False), "the removed manifest's component is gone")
            with pytest.raises(NoComponentsConfigured):
                await client.state.get("orders", "o1")
    finally:
        await runtime.stop(grace=1)


async def _logged(caplog: pytest.LogCaptureFixture, text: str, count: int = 1) -> bool:
    return sum(text in r.getMessage() for r in caplog.records) >= count


def test_hot_reload_is_off_unless_asked_and_takes_a_boolean(tmp_path: Path) -> None:
    config = tmp_path / "runtime.yaml"
    config.write_text("app_id: a\n")
    assert load(config).hot_reload is False
    config.write_text("hot_reload: 'yes'\n")
    with pytest.raises(ConfigError, match="hot_reload: expected true or false"):
        load(config)


# -- draining -------------------------------------------------------------------------------------


class Slow:
    """A component-shaped object whose call waits for an event (the drain under test counts it)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def call(self) -> str:
        await self.release.wait()
        return "done"


async def test_drain_waits_for_the_calls_under_way() -> None:
    slow = Slow()
    track_calls(slow)
    call = asyncio.create_task(slow.call())
    await asyncio.sleep(0)
    assert await drain(slow, 0.2) is False  # the call still runs: the limit passes first
    slow.release.set()
    assert await drain(slow, 5) is True
    assert call.result() == "done"


# -- layotto serve --hot-reload ---------------------------------------------------------------------


def test_serve_with_the_hot_reload_flag_applies_an_added_component(tmp_path: Path) -> None:
    """The flag turns hot reload on; the config is read again with the command's flags, so the
    listen addresses they set are no change needing a restart."""
    config = tmp_path / "runtime.yaml"
    config.write_text(yaml.safe_dump({"hot_reload_seconds": POLL_SECONDS, "state": {"main": {"type": "in-memory"}}}))
    server = start_server("-c", str(config), "--hot-reload", data_dir=tmp_path / "data")
    try:
        body = {
            "hot_reload_seconds": POLL_SECONDS,
            "state": {"main": {"type": "in-memory"}, "extra": {"type": "in-memory"}},
        }
        config.write_text(yaml.safe_dump(body))
        deadline = time.monotonic() + 15
        while "extra" not in {c["name"] for c in json.loads(server.http_get("/v1.0/metadata")[1])["components"]}:
            assert time.monotonic() < deadline, "the added component is not listed"
            time.sleep(POLL_SECONDS)
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr
    assert "hot reload applied: added state.extra" in stderr
    assert "restart" not in stderr
