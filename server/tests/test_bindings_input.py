"""Input bindings delivered to the app: a cron binding fires to a SubscriberApp (the SDK's app
side, serving Dapr's AppCallback), and the app's reply saves state and goes on to an output binding; a Redis
list is delivered at least once, in order, with what a stopped reader left redelivered (also by
a new runtime process after one was SIGKILLed holding an item); a PostgreSQL NOTIFY reaches the app."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from backends import address, require, require_installed
from server_helpers import PrivateBackend, start_server
from test_bindings import http_target

from layotto.client import BindingEvent, BindingReply, SubscriberApp
from layotto.server import Runtime
from layotto.server.components.bindings import BindingRequest
from layotto.server.components.bindings.cron import Schedule
from layotto.server.config import from_mapping


async def test_cron_fires_to_the_app_and_the_reply_goes_to_an_output_binding(tmp_path: Path) -> None:
    runner, url, received = await http_target()
    events: asyncio.Queue[BindingEvent] = asyncio.Queue()
    app = SubscriberApp()

    @app.binding("tick")
    async def on_tick(event: BindingEvent) -> BindingReply:
        await events.put(event)
        return BindingReply(to=("web",), data=b"tock", state_store="mem", states={"last-tick": b"seen"})

    @app.binding("not-configured")
    async def never(event: BindingEvent) -> None:
        raise AssertionError("no such binding is configured")

    try:
        async with app.serve("127.0.0.1:0") as port:
            config: Any = from_mapping(
                {
                    "data_dir": str(tmp_path),
                    "grpc_address": "127.0.0.1:0",
                    "http_address": "127.0.0.1:0",
                    "app_callback_address": f"127.0.0.1:{port}",
                    "bindings": {
                        "tick": {"type": "cron", "metadata": {"schedule": "@every 200ms"}},
                        "idle": {"type": "cron", "metadata": {"schedule": "@every 1h"}},
                        "web": {"type": "http", "metadata": {"url": url}},
                    },
                    "state": {"mem": {"type": "in-memory"}},
                }
            )
            async with Runtime(config) as rt:
                first = await asyncio.wait_for(events.get(), 10)
                second = await asyncio.wait_for(events.get(), 10)
                assert first.name == second.name == "tick" and first.data == b""
                assert first.metadata["timeZone"] == "Local" and first.metadata["readTimeUTC"].endswith(" +0000 UTC")
                assert rt.app_bindings is not None and rt.app_bindings.readers.reading == ["tick"]
                for _ in range(100):
                    if received:
                        break
                    await asyncio.sleep(0.05)
                assert received[0]["method"] == "POST" and received[0]["body"] == b"tock"
                store = rt.components.find("state", "mem", "store_name")
                saved = await store.get("last-tick")  # type: ignore[attr-defined]
                assert saved is not None and saved.value == b"seen"  # saved before the reply went on
    finally:
        await runner.cleanup()


def test_schedules_take_dapr_syntax() -> None:
    start = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert Schedule("@every 1m30s").next_after(start) == start + dt.timedelta(seconds=90)
    assert Schedule("*/15 * * * * *").next_after(start) == start + dt.timedelta(seconds=15)  # seconds first
    assert Schedule("*/5 * * * *").next_after(start) == start + dt.timedelta(minutes=5)
    assert Schedule("@hourly").next_after(start) == start + dt.timedelta(hours=1)
    for bad in ("every 1s", "@every 0s", "* * *", "61 * * * * *", "0 0 30 2 *", "0 0 0 31 2 *"):  # no Feb 30, 31
        try:
            Schedule(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


async def test_redis_list_input_binding_delivers_at_least_once_in_order(tmp_path: Path) -> None:
    require("redis")
    import redis.asyncio as aioredis

    key = f"binding-input-{uuid.uuid4().hex}"
    processing = f"{key}:processing:app"
    client = aioredis.Redis.from_url(f"redis://{address('redis')}")
    await client.rpush(processing, b"left-by-a-stopped-reader")
    await client.lpush(key, b"a", b"b", b"c")  # the list's tail (a) is the oldest
    seen: list[bytes] = []
    done = asyncio.Event()
    app = SubscriberApp()

    @app.binding("jobs")
    async def on_job(event: BindingEvent) -> None:
        seen.append(event.data)
        assert event.metadata["key"] == key
        if event.data == b"b" and seen.count(b"b") == 1:
            raise RuntimeError("not this time")
        if event.data == b"c":
            done.set()

    metadata = {"redisHost": address("redis"), "listKey": key, "redeliverIntervalInSeconds": "0.1"}
    try:
        async with app.serve("127.0.0.1:0") as port:
            config: Any = from_mapping(
                {
                    "app_id": "app",
                    "data_dir": str(tmp_path),
                    "grpc_address": "127.0.0.1:0",
                    "http_address": "127.0.0.1:0",
                    "app_callback_address": f"127.0.0.1:{port}",
                    "bindings": {"jobs": {"type": "redis", "metadata": metadata}},
                }
            )
            async with Runtime(config):
                await asyncio.wait_for(done.wait(), 20)
                assert seen == [b"left-by-a-stopped-reader", b"a", b"b", b"b", b"c"]
                for _ in range(100):  # the last item leaves the processing list once the app answered
                    if await client.llen(processing) == 0:
                        break
                    await asyncio.sleep(0.05)
                assert await client.llen(processing) == 0 and await client.llen(key) == 0
    finally:
        await client.delete(key, processing)
        await client.aclose()


async def test_an_input_binding_read_while_its_backend_is_down_reads_once_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not shutil.which("redis-server"):
        require_installed("redis-server")
    import redis.asyncio as aioredis

    backend = PrivateBackend("redis", tmp_path / "redis")
    backend.start()
    got: asyncio.Queue[bytes] = asyncio.Queue()
    app = SubscriberApp()
    metadata = {**backend.metadata, "listKey": "jobs"}
    try:
        async with app.serve("127.0.0.1:0") as port:
            config: Any = from_mapping(
                {
                    "data_dir": str(tmp_path),
                    "grpc_address": "127.0.0.1:0",
                    "http_address": "127.0.0.1:0",
                    "app_callback_address": f"127.0.0.1:{port}",
                    "subscriptions_refresh_seconds": 0.1,
                    "bindings": {"jobs": {"type": "redis", "metadata": metadata}},
                }
            )
            async with Runtime(config) as rt:
                assert rt.app_bindings is not None
                await asyncio.wait_for(rt.app_bindings.listed.wait(), 10)  # the app lists no binding yet
                backend.stop()

                @app.binding("jobs")
                async def on_job(event: BindingEvent) -> None:
                    await got.put(event.data)

                for _ in range(200):  # the reader began while Redis was down
                    if any("stopped reading" in record.getMessage() for record in caplog.records):
                        break
                    await asyncio.sleep(0.05)
                backend.start()
                client = aioredis.Redis(host="127.0.0.1", port=backend.port)
                await client.lpush("jobs", b"after the outage")
                await client.aclose()
                assert await asyncio.wait_for(got.get(), 15) == b"after the outage"
    finally:
        backend.stop()


async def test_redis_list_input_binding_with_a_short_timeout_waits_without_timing_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require("redis")
    import redis.asyncio as aioredis

    key = f"binding-input-{uuid.uuid4().hex}"
    got: asyncio.Queue[bytes] = asyncio.Queue()
    app = SubscriberApp()

    @app.binding("jobs")
    async def on_job(event: BindingEvent) -> None:
        await got.put(event.data)

    metadata = {"redisHost": address("redis"), "listKey": key, "timeoutInSeconds": "0.3"}
    client = aioredis.Redis.from_url(f"redis://{address('redis')}")
    try:
        async with app.serve("127.0.0.1:0") as port:
            config: Any = from_mapping(
                {
                    "data_dir": str(tmp_path),
                    "grpc_address": "127.0.0.1:0",
                    "http_address": "127.0.0.1:0",
                    "app_callback_address": f"127.0.0.1:{port}",
                    "bindings": {"jobs": {"type": "redis", "metadata": metadata}},
                }
            )
            async with Runtime(config):
                await client.lpush(key, b"first")
                assert await asyncio.wait_for(got.get(), 10) == b"first"
                await asyncio.sleep(0.7)  # more than two timeouts of 0.3 s with the list empty
                await client.lpush(key, b"second")
                assert await asyncio.wait_for(got.get(), 10) == b"second"
        assert not [r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()]
    finally:
        await client.delete(key)
        await client.aclose()


async def test_postgresql_input_binding_delivers_each_notify_on_its_channel(tmp_path: Path) -> None:
    require("postgresql")
    channel = f"binding_{uuid.uuid4().hex[:12]}"
    payloads: asyncio.Queue[BindingEvent] = asyncio.Queue()
    app = SubscriberApp()

    @app.binding("db")
    async def on_notify(event: BindingEvent) -> None:
        await payloads.put(event)

    metadata = {"connectionString": address("postgresql"), "channel": channel}
    async with app.serve("127.0.0.1:0") as port:
        config: Any = from_mapping(
            {
                "data_dir": str(tmp_path),
                "grpc_address": "127.0.0.1:0",
                "http_address": "127.0.0.1:0",
                "app_callback_address": f"127.0.0.1:{port}",
                "bindings": {"db": {"type": "postgresql", "metadata": metadata}},
            }
        )
        async with Runtime(config) as rt:
            assert rt.app_bindings is not None
            await asyncio.wait_for(rt.app_bindings.listed.wait(), 10)
            binding = rt.components.find("bindings", "db", "name")
            notify = {"sql": "SELECT pg_notify($1, $2)"}
            for _ in range(100):  # until the reader's LISTEN is in place: a notification before it is lost
                await binding.invoke(  # type: ignore[attr-defined]
                    BindingRequest("query", metadata={**notify, "params": json.dumps([channel, "probe"])})
                )
                try:
                    await asyncio.wait_for(payloads.get(), 0.1)
                    break
                except TimeoutError:
                    continue
            await binding.invoke(  # type: ignore[attr-defined]
                BindingRequest("query", metadata={**notify, "params": json.dumps([channel, "order ' 7"])})
            )
            event = await asyncio.wait_for(payloads.get(), 10)
            while event.data == b"probe":
                event = await asyncio.wait_for(payloads.get(), 10)
            assert event.name == "db" and event.data == b"order ' 7" and event.metadata["channel"] == channel
            assert int(event.metadata["pid"]) > 0


async def test_an_item_a_killed_runtime_held_is_delivered_by_the_next(tmp_path: Path) -> None:
    require("redis")
    import redis.asyncio as aioredis

    key = f"binding-kill-{uuid.uuid4().hex}"
    client = aioredis.Redis.from_url(f"redis://{address('redis')}")
    held, release = asyncio.Event(), asyncio.Event()
    deliveries: list[bytes] = []
    app = SubscriberApp()

    @app.binding("jobs")
    async def on_job(event: BindingEvent) -> None:
        deliveries.append(event.data)
        if len(deliveries) == 1:
            held.set()
            await release.wait()  # the first runtime is killed while the app still holds the item

    try:
        async with app.serve("127.0.0.1:0") as port:
            config = tmp_path / "runtime.yaml"
            config.write_text(
                f"app_id: killer\napp_callback_address: 127.0.0.1:{port}\nbindings:\n  jobs:\n    type: redis\n"
                f"    metadata: {{redisHost: '{address('redis')}', listKey: {key}}}\n"
            )
            first = await asyncio.to_thread(start_server, "-c", str(config), data_dir=tmp_path / "a")
            try:
                await client.lpush(key, b"job-1")
                await asyncio.wait_for(held.wait(), 20)
            finally:
                first.process.kill()
                await asyncio.to_thread(first.process.wait)
            assert await client.llen(f"{key}:processing:killer") == 1  # unacknowledged, kept
            second = await asyncio.to_thread(start_server, "-c", str(config), data_dir=tmp_path / "b")
            try:
                for _ in range(200):
                    if len(deliveries) == 2:
                        break
                    await asyncio.sleep(0.05)
                assert deliveries == [b"job-1", b"job-1"]
            finally:
                release.set()
                code, stderr = await asyncio.to_thread(second.terminate)
                assert code == 0, stderr
    finally:
        await client.delete(key, f"{key}:processing:killer")
        await client.aclose()


async def test_mqtt3_input_binding_offers_a_message_again_until_the_app_takes_it(tmp_path: Path) -> None:
    require("mqtt")
    topic = f"binding-input/{uuid.uuid4().hex}"
    events: asyncio.Queue[BindingEvent] = asyncio.Queue()
    refused: list[bytes] = []
    app = SubscriberApp()

    @app.binding("mq")
    async def on_message(event: BindingEvent) -> None:
        if event.data == b"refuse-once" and not refused:
            refused.append(event.data)
            raise RuntimeError("not yet")
        await events.put(event)

    async with app.serve("127.0.0.1:0") as port:
        config: Any = from_mapping(
            {
                "data_dir": str(tmp_path),
                "grpc_address": "127.0.0.1:0",
                "http_address": "127.0.0.1:0",
                "app_callback_address": f"127.0.0.1:{port}",
                "bindings": {"mq": {"type": "mqtt3", "metadata": {"url": address("mqtt"), "topic": topic}}},
            }
        )
        async with Runtime(config) as rt:
            binding = rt.components.find("bindings", "mq", "name")
            for _ in range(100):  # until the reader's subscription is in place
                await binding.invoke(BindingRequest("create", data=b"probe"))  # type: ignore[attr-defined]
                try:
                    await asyncio.wait_for(events.get(), 0.1)
                    break
                except TimeoutError:
                    continue
            await binding.invoke(BindingRequest("create", data=b"refuse-once"))  # type: ignore[attr-defined]
            event = await asyncio.wait_for(events.get(), 10)
            while event.data == b"probe":
                event = await asyncio.wait_for(events.get(), 10)
            assert refused == [b"refuse-once"] and event.data == b"refuse-once"
            assert event.name == "mq" and event.metadata["topic"] == topic


async def test_rabbitmq_input_binding_requeues_what_the_app_fails(tmp_path: Path) -> None:
    require("rabbitmq")
    queue = f"binding-input-{uuid.uuid4().hex}"
    events: asyncio.Queue[BindingEvent] = asyncio.Queue()
    refused: list[bytes] = []
    app = SubscriberApp()

    @app.binding("jobs")
    async def on_job(event: BindingEvent) -> None:
        if not refused:
            refused.append(event.data)
            raise RuntimeError("not yet")
        await events.put(event)

    metadata = {
        "host": address("rabbitmq"),
        "queueName": queue,
        "deleteWhenUnused": "true",
        "redeliverIntervalInSeconds": "0.1",
    }
    async with app.serve("127.0.0.1:0") as port:
        config: Any = from_mapping(
            {
                "data_dir": str(tmp_path),
                "grpc_address": "127.0.0.1:0",
                "http_address": "127.0.0.1:0",
                "app_callback_address": f"127.0.0.1:{port}",
                "bindings": {"jobs": {"type": "rabbitmq", "metadata": metadata}},
            }
        )
        async with Runtime(config) as rt:
            binding = rt.components.find("bindings", "jobs", "name")
            await binding.invoke(  # type: ignore[attr-defined]
                BindingRequest("create", data=b"job-1", metadata={"trace": "t1"})
            )
            event = await asyncio.wait_for(events.get(), 10)
            assert refused == [b"job-1"] and event.data == b"job-1"  # requeued, then taken
            assert event.name == "jobs" and event.metadata["trace"] == "t1"
