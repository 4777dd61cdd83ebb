"""The SDK's client-side cost: the CPU this process spends per call through
``layotto.client.RuntimeClient`` against a raw grpc.aio ``RuntimeStub`` making the same call
(same request fields, same deadline), to the same `layotto serve` (in-memory store) in another
process. Rounds alternate raw / SDK; the figure is this process's utime + stime (every thread,
gRPC's C threads included) over the measured window, divided by the calls made.

    python bench/sdk_client.py [--rounds 6] [--seconds 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import closed_loop
from _runtime import start_runtime, stop, wait_ready

from layotto.client import RuntimeClient
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

STORE = "in-memory"
TIMEOUT = 10.0  # the SDK's default deadline, given to the raw stub too
Call = Callable[[], Awaitable[object]]


def own_cpu_seconds() -> float:
    """User plus system CPU time of this process (every thread) so far."""
    times = os.times()
    return times.user + times.system


def raw_calls(stub: runtime_pb2_grpc.RuntimeStub) -> dict[str, Call]:
    async def get() -> object:
        response = await stub.GetState(pb.GetStateRequest(store_name=STORE, key="bench"), timeout=TIMEOUT)
        return response.data

    async def save() -> object:
        request = pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key="bench", value=b"value")])
        return await stub.SaveState(request, timeout=TIMEOUT)

    return {"GetState": get, "SaveState": save}


def sdk_calls(client: RuntimeClient) -> dict[str, Call]:
    async def get() -> object:
        return (await client.state.get(STORE, "bench")).value

    async def save() -> object:
        await client.state.save(STORE, "bench", b"value")
        return None

    return {"GetState": get, "SaveState": save}


async def run(address: str, rounds: int, seconds: float, concurrency: int) -> dict[tuple[str, str], list[float]]:
    """Client CPU µs per call, per (operation, client) and round."""
    figures: dict[tuple[str, str], list[float]] = {}
    async with grpc.aio.insecure_channel(address) as channel, RuntimeClient(address, timeout=TIMEOUT) as client:
        clients = {"raw grpc.aio stub": raw_calls(runtime_pb2_grpc.RuntimeStub(channel)), "SDK": sdk_calls(client)}
        for calls in clients.values():  # connect and warm both
            for call in calls.values():
                await closed_loop("warm-up", call, concurrency, 0.5, warmup=0.0)
        for _ in range(rounds):
            for operation in ("GetState", "SaveState"):
                for name, calls in clients.items():
                    before = own_cpu_seconds()
                    result = await closed_loop(name, calls[operation], concurrency, seconds, warmup=0.0)
                    micros = (own_cpu_seconds() - before) / result.requests * 1e6
                    figures.setdefault((operation, name), []).append(micros)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per row and round")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sdk-bench.yaml"
        config.write_text(yaml.safe_dump({"state": {STORE: {"type": "in-memory"}}}))
        server, address = start_runtime(tmp, config)
        try:
            asyncio.run(wait_ready(address))
            figures = asyncio.run(run(address, args.rounds, args.seconds, args.concurrency))
        finally:
            stop(server)
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}; concurrency {args.concurrency}, {args.rounds} alternating rounds of "
        f"{args.seconds:g} s; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print("| call | client CPU µs per call, median (rounds) | SDK ÷ raw |")
    print("|---|---|---|")
    for operation in ("GetState", "SaveState"):
        raw = statistics.median(figures[(operation, "raw grpc.aio stub")])
        for name in ("raw grpc.aio stub", "SDK"):
            values = figures[(operation, name)]
            median = statistics.median(values)
            rounds = " / ".join(f"{v:.0f}" for v in values)
            ratio = f"{median / raw:.2f}x" if name == "SDK" else ""
            print(f"| {operation}, {name} | {median:.0f} ({rounds}) | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
