"""GetState throughput and latency: the runtime's embedded stores against a bare grpc.aio server.

Both servers run as child processes on loopback and are measured in the same run by
the same load generator (this process), so the ratio is what matters, not the
absolute figures. Usage:

    python bench/state_throughput.py [--seconds 10] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop
from _runtime import free_port, start, start_runtime, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

HERE = Path(__file__).parent


async def measure(name: str, address: str, store: str, concurrency: int, seconds: float) -> LoadResult:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        if store:
            item = pb.StateItem(key="bench", value=b"v" * 100)
            await stub.SaveState(pb.SaveStateRequest(store_name=store, states=[item]))
        request = pb.GetStateRequest(store_name=store, key="bench")
        return await closed_loop(name, lambda: stub.GetState(request), concurrency, seconds)


async def run(seconds: float, concurrencies: list[int]) -> list[LoadResult]:
    echo_address = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as data_dir:
        echo = start([sys.executable, str(HERE / "echo_server.py"), echo_address])
        runtime, runtime_address = start_runtime(data_dir)
        try:
            await wait_ready(echo_address)
            await wait_ready(runtime_address)
            results = []
            for concurrency in concurrencies:
                results.append(await measure("bare grpc.aio server", echo_address, "", concurrency, seconds))
                results.append(await measure("runtime, in-memory", runtime_address, "in-memory", concurrency, seconds))
                results.append(await measure("runtime, sqlite", runtime_address, "sqlite", concurrency, seconds))
            return results
        finally:
            for process in (echo, runtime):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    results = asyncio.run(run(args.seconds, args.concurrency))
    print(
        f"GetState, {args.seconds:.0f} s per row, {started}, {platform.platform()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, grpcio {grpc.__version__}"
    )
    print("| server | concurrency | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    for concurrency in args.concurrency:
        rows = {r.name: r for r in results if r.concurrency == concurrency}
        ratio = rows["runtime, in-memory"].rps / rows["bare grpc.aio server"].rps
        print(f"concurrency {concurrency}: in-memory GetState reaches {ratio:.0%} of the bare server's req/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
