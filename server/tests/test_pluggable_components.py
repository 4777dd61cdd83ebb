"""Dapr's pluggable components: a state store and a pub/sub broker served by another gRPC server on a
Unix socket (the example package examples/pluggable-memory, installed by tox), found in the sockets
folder and used through the SDK."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection
from layotto_pluggable_memory import (
    MemoryPubSubComponent,
    MemoryQueueBinding,
    MemoryStateComponent,
    serve_binding,
    serve_pubsub,
    serve_state,
)
from server_helpers import start_server

from layotto.client import (
    BindingEvent,
    EtagMismatch,
    FeatureNotSupported,
    InvalidArgument,
    RuntimeClient,
    StateDelete,
    StateWrite,
    SubscriberApp,
)
from layotto.server import Runtime, embedded_defaults
from layotto.server.components.base import ConfigError
from layotto.server.config import ComponentConfig, RuntimeConfig, with_dapr_components


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short path: a Unix socket's path holds at most 107 bytes."""
    made = Path(tempfile.mkdtemp(prefix="lp-sock-", dir="/tmp"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def config(tmp_path: Path, folder: Path) -> RuntimeConfig:
    return embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        grpc_transport="grpcio",
        components={"state": {"orders": ComponentConfig(type="memstore", metadata={"region": "eu", "shards": "3"})}},
        pluggable_components_path=str(folder),
    )


async def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    for _ in range(int(seconds * 50)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


@asynccontextmanager
async def running(tmp_path: Path, folder: Path, component: MemoryStateComponent) -> AsyncIterator[RuntimeClient]:
    async with serve_state(folder / "memstore.sock", component):
        runtime = Runtime(config(tmp_path, folder))
        await runtime.start()
        try:
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
                yield client
        finally:
            await runtime.stop(grace=1)


async def test_state_api_over_a_pluggable_store(tmp_path: Path, folder: Path) -> None:
    component = MemoryStateComponent(["ETAG", "TRANSACTIONAL"])
    async with running(tmp_path, folder, component) as client:
        assert component.inits == [({"region": "eu", "shards": "3"}, "orders")]
        assert (await client.state.get("orders", "a")).etag is None
        await client.state.save("orders", "a", b"1")
        item = await client.state.get("orders", "a")
        assert (item.value, item.etag) == (b"1", "1")
        assert component.data["a"] == (b"1", 1)  # it is the component's dict that holds it
        with pytest.raises(EtagMismatch):
            await client.state.save("orders", "a", b"2", etag="7")
        with pytest.raises(EtagMismatch):
            await client.state.save("orders", "a", b"2", first_write=True)
        await client.state.save("orders", "a", b"2", etag="1")
        await client.state.transaction("orders", [StateWrite("b", b"x"), StateDelete("a")])
        assert component.data == {"b": (b"x", 3)}
        with pytest.raises(EtagMismatch):  # atomic: the first step is not applied either
            await client.state.transaction("orders", [StateWrite("c", b"y"), StateDelete("b", etag="1")])
        assert sorted(component.data) == ["b"]
        await client.state.delete("orders", "b", etag="3")
        assert component.data == {}


async def test_features_the_component_does_not_declare_are_refused(tmp_path: Path, folder: Path) -> None:
    component = MemoryStateComponent([])  # no ETAG, no TRANSACTIONAL, no TTL
    async with running(tmp_path, folder, component) as client:
        await client.state.save("orders", "a", b"1")
        for refused in (
            client.state.save("orders", "a", b"2", etag="1"),
            client.state.save("orders", "a", b"2", ttl=5),
            client.state.transaction("orders", [StateWrite("b", b"x")]),
        ):
            with pytest.raises(FeatureNotSupported):
                await refused
        assert component.calls == ["Set a"]  # refused by the runtime, never sent


async def test_a_socket_serving_no_state_store_is_a_config_error(tmp_path: Path, folder: Path) -> None:
    server = grpc.aio.server()
    reflection.enable_server_reflection([reflection.SERVICE_NAME], server)
    server.add_insecure_port(f"unix:{folder / 'memstore.sock'}")
    await server.start()
    try:
        with pytest.raises(
            ConfigError, match=r"state\.orders\.type: pluggable component 'memstore' .* serves no state"
        ):
            await Runtime(config(tmp_path, folder)).start()
    finally:
        await server.stop(None)


async def test_without_its_socket_the_type_is_unknown(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"state\.orders\.type: unknown state store type 'memstore'"):
        await Runtime(config(tmp_path, folder)).start()


async def test_pubsub_over_a_pluggable_broker(tmp_path: Path, folder: Path) -> None:
    component = MemoryPubSubComponent(["SUBSCRIBE_WILDCARDS"])
    async with serve_pubsub(folder / "membus.sock", component):
        bus = {"pubsub": {"bus": ComponentConfig(type="membus", metadata={"brokers": "b1"})}}
        runtime = Runtime(replace(config(tmp_path, folder), components=bus))
        await runtime.start()
        try:
            assert component.inits == [({"brokers": "b1"}, "bus")]
            assert "WILDCARD_TOPICS" in runtime.components.find("pubsub", "bus", "name").spec.features
            async with (
                RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client,
                client.pubsub.subscribe("bus", "orders") as subscription,
            ):
                await client.pubsub.publish("bus", "orders", {"n": 1})
                message = await asyncio.wait_for(anext(subscription), 10)
                assert message.json() == {"n": 1} and message.topic == "orders"
                await message.ack()
                await wait_for(lambda: component.acks == ["m1"])
            published = component.published[0]
            assert (published.pubsub_name, published.topic) == ("bus", "orders")
            assert json.loads(published.data)["data"] == {"n": 1}  # the runtime's CloudEvent
            assert component.subscriptions[0][0] == "orders" and component.subscriptions[0][1]["consumerID"]
            assert component.ack_errors == []
        finally:
            await runtime.stop(grace=1)


async def test_bindings_over_a_pluggable_component(tmp_path: Path, folder: Path) -> None:
    """Output: the listed operation runs, another is refused; input: events reach the app, and one
    the app failed is answered with an error, so the component offers it again."""
    component = MemoryQueueBinding()
    seen: list[BindingEvent] = []
    app = SubscriberApp()

    @app.binding("queue")
    async def on_item(event: BindingEvent) -> None:
        seen.append(event)
        if event.data == b"second" and sum(e.data == b"second" for e in seen) == 1:
            raise RuntimeError("not this time")

    async with serve_binding(folder / "memqueue.sock", component), app.serve("127.0.0.1:0") as port:
        queue = {"bindings": {"queue": ComponentConfig(type="memqueue", metadata={"size": "10"})}}
        configured = replace(config(tmp_path, folder), components=queue, app_callback_address=f"127.0.0.1:{port}")
        runtime = Runtime(configured)
        await runtime.start()
        try:
            assert sorted(component.inits) == [("input", {"size": "10"}), ("output", {"size": "10"})]
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
                created = await client.bindings.invoke("queue", "create", b"first", {"k": "v"})
                assert created.metadata == {"id": "q1"}
                await client.bindings.invoke("queue", "create", b"second")
                with pytest.raises(InvalidArgument, match="delete"):
                    await client.bindings.invoke("queue", "delete")
            await wait_for(lambda: [e.data for e in seen] == [b"first", b"second", b"second"])
            assert seen[0].metadata["k"] == "v"
            await wait_for(lambda: len(component.answers) == 3)
            assert component.answers[0] == ("q1", "")
            assert component.answers[1][0] == "q2" and "not this time" in component.answers[1][1]
            assert component.answers[2] == ("q2", "")
        finally:
            await runtime.stop(grace=1)


async def test_a_dapr_manifest_names_it_as_dapr_does(tmp_path: Path, folder: Path) -> None:
    """``spec.type: state.<socket name>`` in a Dapr Component manifest (components_path)."""
    manifests = tmp_path / "components"
    manifests.mkdir()
    (manifests / "orders.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: orders}\n"
        "spec:\n  type: state.memstore\n  version: v1\n  metadata: [{name: region, value: us}]\n"
    )
    component = MemoryStateComponent(["ETAG"])
    configured = with_dapr_components(replace(config(tmp_path, folder), components={}, components_path=str(manifests)))
    async with serve_state(folder / "memstore.sock", component), Runtime(configured) as runtime:
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
            await client.state.save("orders", "k", b"v")
        assert component.inits == [({"region": "us"}, "orders")] and component.data["k"][0] == b"v"


async def test_the_example_components_as_a_process_behind_layotto_serve(tmp_path: Path, folder: Path) -> None:
    """docs/plugins.md's steps on real processes: `python -m layotto_pluggable_memory`, then
    `layotto serve -c` naming its three sockets; the SDK reaches all three through the runtime."""
    components = subprocess.Popen(
        [sys.executable, "-m", "layotto_pluggable_memory", "--folder", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = None
    try:
        sockets = [folder / f"{name}.sock" for name in ("memstore", "membus", "memqueue")]
        await wait_for(lambda: all(s.is_socket() for s in sockets) or components.poll() is not None)
        assert components.poll() is None, components.stderr.read() if components.stderr else ""
        config = tmp_path / "pluggable.yaml"
        config.write_text(
            f"pluggable_components_path: {folder}\n"
            "state: {orders: {type: memstore}}\npubsub: {bus: {type: membus}}\nbindings: {queue: {type: memqueue}}\n"
        )
        server = await asyncio.to_thread(start_server, "-c", str(config), data_dir=tmp_path)
        async with RuntimeClient(server.grpc_address) as client:
            await client.state.save("orders", "k", b"v")
            assert (await client.state.get("orders", "k")).etag == "1"
            async with client.pubsub.subscribe("bus", "t") as subscription:
                await client.pubsub.publish("bus", "t", b"hello")
                message = await asyncio.wait_for(anext(subscription), 10)
                assert message.data == b"hello"
                await message.ack()
            assert (await client.bindings.invoke("queue", "create", b"x")).metadata == {"id": "q1"}
        code, _ = await asyncio.to_thread(server.terminate)
        assert code == 0
    finally:
        if server is not None and server.process.poll() is None:
            server.process.kill()
        components.terminate()
        assert components.wait(timeout=10) == 0


async def test_a_socket_nobody_listens_on_is_a_config_error(tmp_path: Path, folder: Path) -> None:
    """A component that died and left its socket file: one line naming the component and the socket."""
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(folder / "memstore.sock"))
    stale.close()  # the file stays, nobody accepts
    with pytest.raises(
        ConfigError,
        match=r"^embedded defaults: state\.orders\.type: pluggable component at .*memstore\.sock did not answer",
    ):
        await Runtime(config(tmp_path, folder)).start()


async def test_a_pluggable_component_added_by_a_live_reconfiguration(tmp_path: Path, folder: Path) -> None:
    """Hot reload: a component whose socket appeared after the start is discovered when the new
    config names it."""
    started = replace(config(tmp_path, folder), components={})
    component = MemoryStateComponent(["ETAG"])
    async with Runtime(started) as runtime, serve_state(folder / "memstore.sock", component):
        await runtime.reconfigure(config(tmp_path, folder))
        async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
            await client.state.save("orders", "k", b"v")
        assert component.data["k"][0] == b"v"


GO_COMPONENT = Path(__file__).parents[2] / "examples" / "pluggable-go"


@pytest.fixture(scope="module")
def go_memstore() -> Path:
    """examples/pluggable-go built with `go build` (github.com/dapr/dapr's generated protos through the Go
    module proxy), cached in the temp directory by a hash of its source: a rebuild only when it changes."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.fail("the Go toolchain is not installed: this test builds examples/pluggable-go")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(GO_COMPONENT.iterdir()))).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / "layotto-pluggable-go" / digest / "gomemstore"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    building = binary.with_name(f"gomemstore.{os.getpid()}")
    done = subprocess.run(
        [go, "build", "-o", str(building), "."], cwd=GO_COMPONENT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"go build of examples/pluggable-go failed: {done.stderr.strip()[-800:]}"
    os.replace(building, binary)  # atomic: concurrent builders race harmlessly
    return binary


async def test_a_state_store_written_in_go_with_daprs_protos(tmp_path: Path, folder: Path, go_memstore: Path) -> None:
    """A Go process serving github.com/dapr/dapr's dapr.proto.components.v1 (grpc-go, reflection) is found
    in the folder and used through the SDK: its declared ETAG feature honoured, its errors mapped."""
    component = subprocess.Popen(
        [str(go_memstore), "-folder", str(folder), "-name", "gomemstore"], stderr=subprocess.PIPE, text=True
    )
    try:
        socket = folder / "gomemstore.sock"
        await wait_for(lambda: socket.is_socket() or component.poll() is not None)
        assert component.poll() is None, component.stderr.read() if component.stderr else ""
        stores = {"state": {"orders": ComponentConfig(type="gomemstore", metadata={"region": "eu"})}}
        async with Runtime(replace(config(tmp_path, folder), components=stores)) as runtime:
            assert "ETAG" in runtime.components.find("state", "orders", "name").spec.features
            async with RuntimeClient(f"127.0.0.1:{runtime.grpc_port}") as client:
                assert (await client.state.get("orders", "a")).etag is None
                await client.state.save("orders", "a", b"1")
                item = await client.state.get("orders", "a")
                assert (item.value, item.etag) == (b"1", "1")
                with pytest.raises(EtagMismatch):
                    await client.state.save("orders", "a", b"2", etag="7")
                with pytest.raises(EtagMismatch):
                    await client.state.save("orders", "a", b"2", first_write=True)
                with pytest.raises(FeatureNotSupported):  # TTL is not declared: refused before the component
                    await client.state.save("orders", "a", b"2", ttl=5)
                await client.state.save("orders", "a", b"2", etag="1")
                assert (await client.state.get("orders", "a")).value == b"2"
                await client.state.delete("orders", "a", etag="2")
                assert (await client.state.get("orders", "a")).etag is None
        component.terminate()
        assert component.wait(timeout=10) == 0
        assert not socket.exists()  # the component removed its socket on SIGTERM
        assert "init with 1 metadata keys" in (component.stderr.read() if component.stderr else "")
    finally:
        if component.poll() is None:
            component.kill()
            component.wait()
