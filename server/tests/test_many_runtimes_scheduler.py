"""Delayed messages and jobs across three real `layotto serve` processes of one app id sharing one
Redis scheduler: each message is published, and each job occurrence delivered to the app, exactly
once in total, whichever runtime claims it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import backends
import grpc
import yaml
from server_helpers import ServerProcess, free_port, start_server

from layotto.client import JobEvent, RuntimeClient, SubscriberApp, Subscription
from layotto.proto.extension.v1.delay_queue import delay_queue_pb2 as dq
from layotto.proto.extension.v1.delay_queue import delay_queue_pb2_grpc


def write_config(tmp_path: Path, app_port: int) -> Path:
    redis = {"redisHost": backends.address("redis")}
    config = {
        "app_id": f"app-{uuid.uuid4().hex[:8]}",
        "app_callback_address": f"127.0.0.1:{app_port}",
        "pubsub": {"bus": {"type": "redis", "metadata": backends.pubsub_metadata("redis")}},
        "scheduler": {"shared": {"type": "redis", "metadata": {**redis, "queueName": f"q-{uuid.uuid4().hex[:8]}"}}},
    }
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def schedule(server: ServerProcess, topic: str, data: bytes, delay: int) -> None:
    async with grpc.aio.insecure_channel(server.grpc_address) as channel:
        request = dq.DelayMessageRequest(component_name="bus", topic=topic, data=data, delay_in_seconds=delay)
        await delay_queue_pb2_grpc.DelayQueueStub(channel).PublishDelayMessage(request)


async def receive_one(subscription: Subscription, seen: Counter[str]) -> str:
    message = await anext(subscription)
    seen[message.text()] += 1
    await message.ack()
    return message.text()


async def collect_until(subscription: Subscription, seen: Counter[str], last: str) -> None:
    while await receive_one(subscription, seen) != last:
        pass


def job_app(fired: Counter[str]) -> SubscriberApp:
    app = SubscriberApp()
    for n in range(6):

        @app.job(f"job-{n}")
        async def on_job(event: JobEvent) -> None:
            fired[event.name] += 1

    return app


async def test_three_runtimes_fire_each_delayed_message_and_job_occurrence_once(tmp_path: Path) -> None:
    backends.require("redis")
    app_port = free_port()
    config = write_config(tmp_path, app_port)
    servers = [start_server("-c", str(config), data_dir=tmp_path / f"r{i}") for i in range(3)]
    topic = f"due-{uuid.uuid4().hex[:8]}"
    fired: Counter[str] = Counter()
    try:
        async with (
            job_app(fired).serve(f"127.0.0.1:{app_port}"),
            RuntimeClient(servers[0].grpc_address) as client,
            client.pubsub.subscribe("bus", topic) as sub,
        ):
            for n in range(6):  # each runtime claims the app's jobs too: every occurrence reaches the app once
                await client.jobs.schedule(f"job-{n}", schedule="@every 200ms", repeats=4)
            messages = [f"m{n}" for n in range(30)]
            for n, text in enumerate(messages):
                await schedule(servers[n % 3], topic, text.encode(), n % 3)
            seen: Counter[str] = Counter()
            async with asyncio.timeout(60):
                while not all(seen[text] for text in messages):
                    await receive_one(sub, seen)
                await schedule(servers[1], topic, b"marker", 1)  # due after every message: a duplicate comes first
                await collect_until(sub, seen, "marker")
            assert {text: count for text, count in seen.items() if count != 1} == {}
            assert set(seen) == {*messages, "marker"}
            for _ in range(300):  # a job is removed once its last occurrence was delivered
                if not await client.jobs.list():
                    break
                await asyncio.sleep(0.1)
            assert await client.jobs.list() == []
            assert fired == {f"job-{n}": 4 for n in range(6)}
    finally:
        for server in servers:
            stop(server)


def stop(server: ServerProcess) -> None:
    if server.process.poll() is not None:
        return
    try:
        code, stderr = server.terminate()
    except subprocess.TimeoutExpired:
        server.process.kill()
        _, stderr = server.process.communicate()
        raise AssertionError(f"layotto serve did not stop on SIGTERM: {stderr}") from None
    assert code == 0, stderr
