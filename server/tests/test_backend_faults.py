"""A backend stopped under load and started again: fast UNAVAILABLE, then recovery, no restart."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path

import backends
import pytest
import yaml
from server_helpers import PrivateBackend, start_server

from layotto.client import NO_RETRY, BackendUnavailable, ConfigurationItem, RetryPolicy, RuntimeClient

BINARIES = {"redis": "redis-server", "postgresql": "/usr/lib/postgresql"}


SERVERS_INSTALLED = bool(shutil.which("redis-server")) and Path("/usr/lib/postgresql").is_dir()


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
async def test_backend_down_then_back(tmp_path: Path, kind: str) -> None:
    if not SERVERS_INSTALLED:
        backends.require_installed("redis-server and postgresql")
    backend = PrivateBackend(kind, tmp_path / kind)
    backend.start()
    config = tmp_path / "runtime.yaml"
    metadata = {**backend.metadata, **({"keyPrefix": uuid.uuid4().hex} if kind == "redis" else {})}
    config.write_text(yaml.safe_dump({"state": {"shared": {"type": kind, "metadata": metadata}}}))
    server = start_server("-c", str(config), data_dir=tmp_path / "rt")
    try:
        async with RuntimeClient(server.grpc_address, retry=NO_RETRY, timeout=8) as client:
            for i in range(20):  # under load
                await client.state.save("shared", f"k{i}", "v")

            backend.stop()
            errors = []
            for _ in range(5):
                with pytest.raises(BackendUnavailable) as caught:
                    await client.state.get("shared", "k1")
                errors.append(caught.value.message)
            assert all("'shared'" in message for message in errors), errors
            status, body = server.http_get("/actuator/health/readiness")
            assert status == 503
            assert json.loads(body)["components"]["state.shared"]["status"] == "DOWN"

            backend.start()
            recovered = RuntimeClient(
                server.grpc_address, retry=RetryPolicy(attempts=20, initial_backoff=0.2, max_backoff=1.0), timeout=8
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    await recovered.state.save("shared", "after", "ok")
                    break
                except BackendUnavailable:
                    assert time.monotonic() < deadline, "the runtime did not recover after the backend came back"
                    await asyncio.sleep(0.5)
            assert (await recovered.state.get("shared", "after")).value == b"ok"
            await recovered.aclose()
            assert server.http_get("/actuator/health/readiness")[0] == 200
        assert server.process.poll() is None, "the runtime died while its backend was down"
    finally:
        code, stderr = server.terminate()
        backend.stop()
    assert code == 0, stderr


async def test_a_configuration_watch_outlives_its_redis_going_away(tmp_path: Path) -> None:
    """While Redis is down the watch waits (the runtime stays up); once it is back, the watch is
    established again and reports the value saved meanwhile."""
    if not SERVERS_INSTALLED:
        backends.require_installed("redis-server and postgresql")
    backend = PrivateBackend("redis", tmp_path / "redis")
    backend.start()
    config = tmp_path / "runtime.yaml"
    config.write_text(yaml.safe_dump({"config_store": {"shared": {"type": "redis", "metadata": backend.metadata}}}))
    server = start_server("-c", str(config), data_dir=tmp_path / "rt")
    retrying = RetryPolicy(attempts=20, initial_backoff=0.2, max_backoff=1.0)
    try:
        client = RuntimeClient(server.grpc_address, retry=retrying, timeout=8)
        async with client, client.configuration.watch("shared", ["flag"]) as changes:
            backend.stop()
            waiting = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(2)
            assert not waiting.done()  # no change to report, no error either: it waits
            assert server.process.poll() is None, "the runtime died while its backend was down"
            backend.start()
            deadline = time.monotonic() + 30
            while True:
                try:
                    await client.configuration.save("shared", [ConfigurationItem("flag", "on")])
                    break
                except BackendUnavailable:
                    assert time.monotonic() < deadline, "the runtime did not recover after Redis came back"
                    await asyncio.sleep(0.5)
            item = await asyncio.wait_for(waiting, 30)
            while item.content != "on":  # the items as they were when the watch came back, then the change
                item = await asyncio.wait_for(anext(changes), 30)
    finally:
        code, stderr = server.terminate()
        backend.stop()
    assert code == 0, stderr
