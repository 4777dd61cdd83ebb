"""client.configuration against an in-process runtime with the in-memory configuration store."""

from __future__ import annotations

import asyncio

import pytest

from layotto.client import (
    ConfigurationItem,
    InvalidArgument,
    RetryPolicy,
    RuntimeClient,
    RuntimeUnavailable,
    StoreNotFound,
)
from layotto.client.testing import test_runtime
from layotto.server import embedded_defaults
from layotto.server.config import ComponentConfig, RuntimeConfig


def with_configuration() -> RuntimeConfig:
    stores = {"config": ComponentConfig("in-memory")}
    return RuntimeConfig(app_id="shop", components={**embedded_defaults().components, "config_store": stores})


async def test_save_get_delete() -> None:
    async with test_runtime(with_configuration()) as runtime, runtime.client() as client:
        await client.configuration.save(
            "config",
            [ConfigurationItem("color", "red", tags={"owner": "ui"}), ConfigurationItem("size", "10", group="g")],
        )
        assert await client.configuration.get("config", ["color", "missing"]) == [
            ConfigurationItem("color", "red", tags={"owner": "ui"})
        ]
        assert await client.configuration.get("config", group="g") == [ConfigurationItem("size", "10", group="g")]
        await client.configuration.delete("config", ["color"])
        assert await client.configuration.get("config") == []


async def test_watch_reports_current_items_then_changes_and_deletions() -> None:
    async with test_runtime(with_configuration()) as runtime, runtime.client() as client:
        await client.configuration.save("config", [ConfigurationItem("flag", "on")])
        async with client.configuration.watch("config", ["flag"]) as items:
            assert await asyncio.wait_for(anext(items), 5) == ConfigurationItem("flag", "on")
            await client.configuration.save(
                "config", [ConfigurationItem("flag", "off"), ConfigurationItem("other", "x")]
            )
            assert await asyncio.wait_for(anext(items), 5) == ConfigurationItem("flag", "off")
            await client.configuration.delete("config", ["flag"])
            assert await asyncio.wait_for(anext(items), 5) == ConfigurationItem("flag", "", deleted=True)


async def test_errors_are_named() -> None:
    async with test_runtime(with_configuration()) as runtime, runtime.client() as client:
        with pytest.raises(StoreNotFound):
            await client.configuration.get("nacos", ["k"])
        with pytest.raises(InvalidArgument) as empty:
            await client.configuration.delete("config", [])
        assert empty.value.field == "keys"
        with pytest.raises(StoreNotFound):
            async with client.configuration.watch("nacos"):
                pass


async def test_a_watch_is_established_again_when_the_runtime_restarts() -> None:
    async with test_runtime(with_configuration()) as first:
        retry = RetryPolicy(attempts=3, initial_backoff=0.05, max_backoff=0.2)
        client = RuntimeClient(first.address, retry=retry)
        watch = client.configuration.watch("config", ["flag"])
        await watch.__aenter__()
        waiting = asyncio.ensure_future(anext(watch))
    port = int(first.address.rsplit(":", 1)[1])
    await asyncio.sleep(0.5)  # the first runtime lets go of its port
    async with test_runtime(with_configuration(), port=port) as second, second.client(retry=retry) as writer:
        for _ in range(50):  # until the new runtime answers
            try:
                await writer.configuration.save("config", [ConfigurationItem("flag", "back")])
                break
            except RuntimeUnavailable:
                await asyncio.sleep(0.2)
        # saved before the watch is back: its first report, the items as they are; after: a change
        assert await asyncio.wait_for(waiting, 30) == ConfigurationItem("flag", "back")
        await watch.aclose()
        await client.aclose()
