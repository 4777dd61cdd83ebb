"""Configuration on Redis and etcd: GetConfiguration through the runtime against the same read
done directly with the driver the component uses, and how long a change saved through one
runtime takes to reach a subscriber of another runtime, all in the same run.

    scripts/backends up redis etcd
    python bench/configuration.py [--seconds 5] [--changes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop, percentile
from _runtime import start_runtime, stop, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

KEYS = [f"key-{i}" for i in range(10)]


def config(directory: Path, namespace: str) -> Path:
    body = {
        "app_id": "bench",
        "config_store": {
            "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379", "keyPrefix": f"{namespace}:"}},
            "etcd": {"type": "etcd", "metadata": {"endpoints": "127.0.0.1:2379", "keyPrefixPath": f"/{namespace}"}},
        },
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


async def direct_reads(
    namespace: str,
) -> dict[str, tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]]:
    """(read the ten keys, close) per store, with the driver its component uses."""
    import redis.asyncio as aioredis
    from aetcd import rpc

    client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool(max_connections=32))
    hash_key = f"{namespace}:bench/default/default"
    channel = grpc.aio.insecure_channel("127.0.0.1:2379")
    kv = rpc.KVStub(channel)
    prefix = f"/{namespace}/bench/default/default/".encode()

    async def etcd_read() -> object:  # as the component reads: the ranges in one transaction
        ranges = [rpc.RequestOp(request_range=rpc.RangeRequest(key=prefix + k.encode())) for k in KEYS]
        return await kv.Txn(rpc.TxnRequest(success=ranges))

    async def close_etcd() -> None:
        await channel.close()

    return {
        "redis": (lambda: client.hmget(hash_key, KEYS), client.aclose),
        "etcd": (etcd_read, close_etcd),
    }


async def propagation(writer: str, reader: str, store: str, changes: int, rate: float) -> LoadResult:
    """Save ``changes`` values through ``writer`` at ``rate``/s; time each until ``reader``'s subscriber has it."""
    seen: dict[str, float] = {}
    async with grpc.aio.insecure_channel(writer) as w, grpc.aio.insecure_channel(reader) as r:
        stop_requests = asyncio.Event()

        async def requests() -> AsyncIterator[pb.SubscribeConfigurationRequest]:
            yield pb.SubscribeConfigurationRequest(store_name=store, keys=["watched"])
            await stop_requests.wait()

        stream = runtime_pb2_grpc.RuntimeStub(r).SubscribeConfiguration(requests())
        await stream.read()  # the watch is established
        sent: dict[str, float] = {}

        async def receive() -> None:
            while len(seen) < changes:
                response = await stream.read()
                for item in response.items:
                    seen.setdefault(item.content, time.perf_counter())

        receiving = asyncio.ensure_future(receive())
        stub = runtime_pb2_grpc.RuntimeStub(w)
        for i in range(changes):
            value = f"v{i}"
            sent[value] = time.perf_counter()
            item = pb.ConfigurationItem(key="watched", content=value)
            await stub.SaveConfiguration(pb.SaveConfigurationRequest(store_name=store, items=[item]))
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(receiving, 30)
        stop_requests.set()
        stream.cancel()
    delays = sorted((seen[v] - sent[v]) * 1000 for v in sent)
    return LoadResult(
        f"{store}: save via runtime A → subscriber on runtime B",
        0,
        len(delays),
        changes / rate,
        percentile(delays, 0.5),
        percentile(delays, 0.9),
        percentile(delays, 0.99),
    )


async def run(seconds: float, changes: int, rate: float, concurrency: int) -> list[LoadResult]:
    results: list[LoadResult] = []
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = config(Path(tmp), namespace)
        a, address_a = start_runtime(f"{tmp}/a", path)
        b, address_b = start_runtime(f"{tmp}/b", path)
        try:
            await wait_ready(address_a)
            await wait_ready(address_b)
            reads = await direct_reads(namespace)
            async with grpc.aio.insecure_channel(address_a) as channel:
                stub = runtime_pb2_grpc.RuntimeStub(channel)
                for store in ("redis", "etcd"):
                    items = [pb.ConfigurationItem(key=k, content="x" * 100) for k in KEYS]
                    await stub.SaveConfiguration(pb.SaveConfigurationRequest(store_name=store, items=items))
                    request = pb.GetConfigurationRequest(store_name=store, keys=KEYS)
                    direct, close = reads[store]
                    results.append(
                        await closed_loop(f"{store}: ten keys, driver directly", direct, concurrency, seconds)
                    )
                    results.append(
                        await closed_loop(
                            f"{store}: ten keys, GetConfiguration",
                            lambda r=request: stub.GetConfiguration(r),
                            concurrency,
                            seconds,
                        )
                    )
                    await close()
            for store in ("redis", "etcd"):
                results.append(await propagation(address_a, address_b, store, changes, rate))
        finally:
            stop(a)
            stop(b)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="changes per second in the propagation rows")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    results = asyncio.run(run(args.seconds, args.changes, args.rate, args.concurrency))
    print(f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| what | concurrency (0: one change at a time) | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
