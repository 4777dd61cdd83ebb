"""Publish throughput, publish latency and publish→deliver latency through one `layotto serve`
on Redis Streams and NATS JetStream, against the same client libraries (redis-py, nats-py)
used directly from this process, in the same run.

    scripts/backends up redis nats
    python bench/pubsub.py [--seconds 5]

Rows: PublishEvent at concurrency 16 (closed loop) through the runtime, through the floor
for any Python sidecar (bench/minimal_sidecar.py: a bare grpc.aio server making the one
broker call) and directly; publish latency at a fixed 500/s (open loop; "added p90" is
the runtime's p90 minus the direct client's); and
publish→deliver latency at a fixed 200/s with one subscriber acking each message
(through the runtime: SubscribeTopicEvents; direct: a consumer group / durable consumer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import nats
import redis.asyncio as aioredis
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop, fixed_rate, percentile
from _runtime import free_port, start_runtime, stop, wait_ready

from layotto.proto.runtime.v1 import appcallback_pb2 as cb
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

REDIS, NATS_URL = "127.0.0.1:6379", "nats://127.0.0.1:4222"
RUN = uuid.uuid4().hex[:8]


def config(directory: Path) -> Path:
    body = {
        "app_id": f"bench-{RUN}",
        "pubsub": {
            "redis": {"type": "redis", "metadata": {"redisHost": REDIS}},
            "nats": {"type": "nats", "metadata": {"natsURL": NATS_URL, "streamPrefix": f"bench{RUN}"}},
        },
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


# -- publish -------------------------------------------------------------------------------


def runtime_publisher(stub: Any, pubsub: str, topic: str) -> Callable[[], Awaitable[object]]:
    def call() -> Awaitable[object]:
        data = str(time.perf_counter()).encode()
        return stub.PublishEvent(
            pb.PublishEventRequest(pubsub_name=pubsub, topic=topic, data=data, data_content_type="text/plain")
        )

    return call


class DirectPublishers:
    """redis-py and nats-py publishing straight to the brokers, connected for the whole run."""

    async def open(self, topic: str) -> dict[str, Callable[[], Awaitable[object]]]:
        self.redis = aioredis.Redis(host="127.0.0.1", port=6379)
        self.nc = await nats.connect(NATS_URL)
        js = self.nc.jetstream()
        await js.add_stream(name=f"direct{RUN}", subjects=[f"direct-{RUN}.>"])
        return {
            "redis": lambda: self.redis.xadd(topic, {b"data": str(time.perf_counter()).encode()}),
            "nats": lambda: js.publish(f"direct-{RUN}.{topic}", str(time.perf_counter()).encode()),
        }

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.nc.close()


# -- publish -> deliver ---------------------------------------------------------------------


async def runtime_delivery(stub: Any, pubsub: str, topic: str, rate: float, seconds: float) -> LoadResult:
    latencies: list[float] = []
    answers: asyncio.Queue[Any] = asyncio.Queue()
    initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=pubsub, topic=topic)

    async def requests() -> AsyncIterator[Any]:
        yield pb.SubscribeTopicEventsRequest(initial_request=initial)
        while (answer := await answers.get()) is not None:
            yield answer

    call = stub.SubscribeTopicEvents(requests())
    await call.read()

    async def consume() -> None:
        while True:
            response = await call.read()
            event = response.event_message
            latencies.append(time.perf_counter() - float(event.data))
            processed = pb.SubscribeTopicEventsRequestProcessed(id=event.id, status=cb.TopicEventResponse())
            answers.put_nowait(pb.SubscribeTopicEventsRequest(event_processed=processed))

    consumer = asyncio.create_task(consume())
    await fixed_rate("", runtime_publisher(stub, pubsub, topic), rate, seconds, warmup=0)
    await asyncio.sleep(1.0)
    consumer.cancel()
    answers.put_nowait(None)
    call.cancel()
    return summarize(f"publish→deliver via runtime ({pubsub})", latencies, seconds)


async def redis_delivery(topic: str, rate: float, seconds: float) -> LoadResult:
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    await client.xgroup_create(topic, "bench", id="$", mkstream=True)
    latencies: list[float] = []

    async def consume() -> None:
        while True:
            batches: Any = await client.xreadgroup("bench", "c1", {topic: ">"}, count=100, block=1000)
            for _, entries in batches or []:
                for entry_id, fields in entries:
                    latencies.append(time.perf_counter() - float(fields[b"data"]))
                    await client.xack(topic, "bench", entry_id)

    consumer = asyncio.create_task(consume())

    async def publish() -> None:
        await client.xadd(topic, {b"data": str(time.perf_counter()).encode()})

    await fixed_rate("", publish, rate, seconds, warmup=0)
    await asyncio.sleep(1.0)
    consumer.cancel()
    await client.aclose()
    return summarize("publish→deliver direct (redis-py)", latencies, seconds)


async def nats_delivery(topic: str, rate: float, seconds: float) -> LoadResult:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    subject = f"direct-{RUN}.deliver-{topic}"
    pull = await js.pull_subscribe(subject, durable=f"bench{RUN}", stream=f"direct{RUN}")
    latencies: list[float] = []

    async def consume() -> None:
        while True:
            try:
                messages = await pull.fetch(batch=100, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for message in messages:
                latencies.append(time.perf_counter() - float(message.data))
                await message.ack()

    consumer = asyncio.create_task(consume())

    async def publish() -> None:
        await js.publish(subject, str(time.perf_counter()).encode())

    await fixed_rate("", publish, rate, seconds, warmup=0)
    await asyncio.sleep(1.0)
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await pull.unsubscribe()
    await nc.close()
    return summarize("publish→deliver direct (nats-py)", latencies, seconds)


def summarize(name: str, latencies: list[float], seconds: float) -> LoadResult:
    ms = sorted(v * 1000 for v in latencies)
    return LoadResult(name, 0, len(ms), seconds, percentile(ms, 0.5), percentile(ms, 0.9), percentile(ms, 0.99))


async def measure(address: str, minimal: dict[str, str], seconds: float, concurrency: int) -> list[LoadResult]:
    results: list[LoadResult] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        floor = {}
        for broker, floor_address in minimal.items():
            floor_channel = grpc.aio.insecure_channel(floor_address)
            await asyncio.wait_for(floor_channel.channel_ready(), 30)
            floor[broker] = runtime_publisher(runtime_pb2_grpc.RuntimeStub(floor_channel), broker, f"floor-{RUN}")
        publishers = DirectPublishers()
        direct = await publishers.open(f"pub-{RUN}")
        for broker in ("redis", "nats"):
            topic = f"pub-{RUN}-{broker}"
            via = runtime_publisher(stub, broker, topic)
            results.append(await closed_loop(f"PublishEvent via runtime ({broker})", via, concurrency, seconds))
            results.append(
                await closed_loop(f"PublishEvent via minimal sidecar ({broker})", floor[broker], concurrency, seconds)
            )
            results.append(await closed_loop(f"publish direct ({broker})", direct[broker], concurrency, seconds))
            results.append(await fixed_rate(f"PublishEvent via runtime ({broker}) @500/s", via, 500, seconds))
            results.append(await fixed_rate(f"publish direct ({broker}) @500/s", direct[broker], 500, seconds))
            name = f"PublishEvent via minimal sidecar ({broker}) @500/s"
            results.append(await fixed_rate(name, floor[broker], 500, seconds))
        results.append(await runtime_delivery(stub, "redis", f"e2e-{RUN}-redis", 200, seconds))
        results.append(await redis_delivery(f"e2e-direct-{RUN}", 200, seconds))
        results.append(await runtime_delivery(stub, "nats", f"e2e-{RUN}-nats", 200, seconds))
        results.append(await nats_delivery(RUN, 200, seconds))
        await publishers.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        runtime, address = start_runtime(tmp, config(Path(tmp)))
        minimal = {broker: f"127.0.0.1:{free_port()}" for broker in ("redis", "nats")}
        sidecars = [
            subprocess.Popen([sys.executable, str(Path(__file__).parent / "minimal_sidecar.py"), where, broker])
            for broker, where in minimal.items()
        ]
        try:
            asyncio.run(wait_ready(address))
            results = asyncio.run(measure(address, minimal, args.seconds, args.concurrency))
        finally:
            stop(runtime)
            for sidecar in sidecars:
                sidecar.kill()
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.seconds:.0f} s per row; concurrency {args.concurrency} for closed-loop rows"
    )
    print("| operation | concurrency | msgs/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    for i, broker in ((0, "redis"), (6, "nats")):
        added = results[i + 3].p90_ms - results[i + 4].p90_ms
        floor_added = results[i + 5].p90_ms - results[i + 4].p90_ms
        of_floor, of_direct = results[i].rps / results[i + 1].rps, results[i].rps / results[i + 2].rps
        print(
            f"{broker}: runtime publish throughput = {of_floor:.0%} of the minimal sidecar, {of_direct:.0%} of direct; "
            f"added p90 at 500/s = {added:+.2f} ms (minimal sidecar: {floor_added:+.2f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
