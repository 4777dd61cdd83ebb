"""Dapr's JS SDK (``@dapr/dapr``, pinned in server/tests/js/package-lock.json) against a running
runtime, in its default HTTP mode (Dapr's HTTP API) and in gRPC mode: state, publish (received
by a gRPC subscriber), secrets, metadata, lock, output bindings and (gRPC only: the SDK's HTTP client has none)
configuration (server/tests/js/dapr_client.mjs); and a
DaprServer app subscribed to a topic, as an HTTP app and as a gRPC app (server/tests/js/dapr_server.mjs). The SDK is installed with ``npm ci`` into server/tests/js the
first time (about 30 s); without node or npm, or with the registry unreachable, the test skips,
and fails instead under LAYOTTO_REQUIRE_BACKENDS=1 (as in CI)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from server_helpers import free_port
from test_pubsub import Subscriber, wait_for

from layotto.client import RuntimeClient
from layotto.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig

JS = Path(__file__).parent / "js"
SDK_VERSION = json.loads((JS / "package.json").read_text())["dependencies"]["@dapr/dapr"]
NODE_TIMEOUT_SECONDS = 120


def unavailable(reason: str) -> None:
    if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def installed_version() -> str | None:
    manifest = JS / "node_modules" / "@dapr" / "dapr" / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.is_file() else None


@pytest.fixture(scope="session")
def dapr_js() -> Path:
    """server/tests/js with the pinned @dapr/dapr installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed to run Dapr's JS SDK")
    if installed_version() != SDK_VERSION:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            unavailable(f"npm ci failed (is the npm registry reachable?):\n{done.stderr[-2000:]}")
    return JS


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"db-password": "s3cret", "api": {"token": "t0k"}}))
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        components={
            "state": {"store": ComponentConfig("in-memory")},
            "pubsub": {"bus": ComponentConfig("in-memory")},
            "lock": {"locks": ComponentConfig("in-memory")},
            "secret_store": {"vault": ComponentConfig("local.file", {"secretsFile": str(secrets)})},
            "config_store": {"config": ComponentConfig("in-memory")},
            "bindings": {"disk": ComponentConfig("localstorage", {"rootPath": str(tmp_path / "disk")})},
        },
    )
    async with Runtime(config) as rt:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as channel:
            item = runtime_pb2.ConfigurationItem(key="flag", content="on")
            await runtime_pb2_grpc.RuntimeStub(channel).SaveConfiguration(
                runtime_pb2.SaveConfigurationRequest(store_name="config", items=[item])
            )
        yield rt


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_dapr_js_sdk(dapr_js: Path, runtime: Runtime, protocol: str) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
    subscriber = await Subscriber(runtime_pb2_grpc.RuntimeStub(channel), "orders").start()
    try:
        node = await asyncio.create_subprocess_exec(
            "node",
            "dapr_client.mjs",
            cwd=dapr_js,
            env={
                **os.environ,
                "DAPR_PROTOCOL": protocol,
                "DAPR_PORT": str(runtime.http_port if protocol == "http" else runtime.grpc_port),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(node.communicate(), NODE_TIMEOUT_SECONDS)
        assert node.returncode == 0, f"{out.decode()}\n{err.decode()}"
        report = json.loads(out.decode().strip().splitlines()[-1])
        expected = ["state", "publish", "secrets", "metadata", "lock", "bindings"] + (
            ["configuration"] if protocol == "grpc" else []
        )
        assert report["done"] == expected
        await wait_for(lambda: len(subscriber.events) == 3)
        events = [(e.data_content_type, e.data) for e in subscriber.events]
        assert [(kind, json.loads(data) if kind == "application/json" else data) for kind, data in events] == [
            ("application/json", {"id": 1}),
            ("application/json", {"id": 2}),
            ("text/plain", b"three"),
        ]
    finally:
        await subscriber.stop()
        await channel.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_a_dapr_js_sdk_server_receives_its_subscriptions_events(
    dapr_js: Path, tmp_path: Path, protocol: str
) -> None:
    """The runtime finds a DaprServer's subscription (GET /dapr/subscribe, or Dapr's
    ListTopicSubscriptions in gRPC mode) and delivers published events to its handler."""
    app_port = free_port()
    app = (
        {"app_protocol": "http", "app_port": app_port}
        if protocol == "http"
        else {"app_callback_address": f"127.0.0.1:{app_port}", "app_callback_protocol": "dapr"}
    )
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        components={"pubsub": {"bus": ComponentConfig("in-memory")}},
        subscriptions_refresh_seconds=0.5,
        **app,  # type: ignore[arg-type]
    )
    async with Runtime(config) as rt:
        node = await asyncio.create_subprocess_exec(
            "node",
            "dapr_server.mjs",
            cwd=dapr_js,
            env={
                **os.environ,
                "DAPR_PROTOCOL": protocol,
                "APP_PORT": str(app_port),
                "DAPR_PORT": str(rt.http_port if protocol == "http" else rt.grpc_port),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert node.stdout is not None
            lines = node.stdout

            async def next_report() -> dict[str, object]:
                while True:
                    line = await asyncio.wait_for(lines.readline(), NODE_TIMEOUT_SECONDS)
                    assert line, "the JS app exited"
                    if line.startswith(b"{"):
                        report: dict[str, object] = json.loads(line)
                        return report

            assert await next_report() == {"started": True}
            async with RuntimeClient(f"127.0.0.1:{rt.grpc_port}") as client:
                assert rt.app_subscriptions is not None
                await asyncio.wait_for(rt.app_subscriptions.listed.wait(), 30)
                await client.pubsub.publish("bus", "orders", {"id": 1})
                await client.pubsub.publish("bus", "orders", {"id": 2})
            assert [await next_report(), await next_report()] == [{"received": {"id": 1}}, {"received": {"id": 2}}]
        finally:
            if node.returncode is None:
                node.kill()
            await node.wait()
