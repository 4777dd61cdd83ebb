"""GetNextId WEAK (runtime block cache) vs STRONG on Redis, and TryLock+Unlock on Redis and etcd,
through one `layotto serve`, at concurrency 16 (closed loop).

    scripts/backends up redis etcd
    python bench/lock_sequencer.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop
from _runtime import start_runtime, stop, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc


def config(directory: Path) -> Path:
    namespace = uuid.uuid4().hex[:8]
    body = {
        "app_id": f"bench-{namespace}",
        "sequencer": {"redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}}},
        "lock": {
            "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}},
            "etcd": {"type": "etcd", "metadata": {"endpoints": "127.0.0.1:2379"}},
        },
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


async def measure(address: str, seconds: float, concurrency: int) -> list[LoadResult]:
    results = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for name, increment in (
            ("GetNextId STRONG (redis)", pb.SequencerOptions.STRONG),
            ("GetNextId WEAK (redis, block cache)", pb.SequencerOptions.WEAK),
        ):
            request = pb.GetNextIdRequest(
                store_name="redis", key="bench", options=pb.SequencerOptions(increment=increment)
            )
            results.append(await closed_loop(name, lambda r=request: stub.GetNextId(r), concurrency, seconds))
        for store in ("redis", "etcd"):
            counter = itertools.count()

            async def lock_unlock(store: str = store, counter: itertools.count[int] = counter) -> None:
                resource = f"bench-{next(counter) % 64}"  # spread over resources: measure the calls, not contention
                owner = uuid.uuid4().hex
                got = await stub.TryLock(
                    pb.TryLockRequest(store_name=store, resource_id=resource, lock_owner=owner, expire=10)
                )
                if got.success:
                    await stub.Unlock(pb.UnlockRequest(store_name=store, resource_id=resource, lock_owner=owner))

            results.append(await closed_loop(f"TryLock+Unlock ({store})", lock_unlock, concurrency, seconds))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        runtime, address = start_runtime(tmp, config(Path(tmp)))
        try:
            asyncio.run(wait_ready(address))
            results = asyncio.run(measure(address, args.seconds, args.concurrency))
        finally:
            stop(runtime)
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.seconds:.0f} s per row, concurrency {args.concurrency}"
    )
    print("| operation | concurrency | ops/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    ratio = results[1].rps / results[0].rps
    print(f"WEAK reaches {ratio:.1f}x STRONG's throughput")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
