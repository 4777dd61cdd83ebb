"""The two gRPC transports side by side: bare echo servers and the runtime's in-memory GetState.

Four servers, each a child process on loopback: a bare GetState echo on grpc.aio and on
pygrpc-native (bench/echo_server.py), and `layotto serve` with ``--grpc-transport grpcio`` and
``native``. They are measured in alternating rounds of one run (every server once per round and
concurrency), so a change in the machine's load hits all of them alike. The primary figure is the
server's CPU per call: utime + stime of the whole server process (all its threads) from
/proc/PID/stat over the measured window, divided by the calls answered. Usage:

    python bench/transport.py [--rounds 3] [--seconds 1.5] [--concurrency 1 16]

The load generator is this process (grpc.aio): its own CPU is not counted, but it bounds req/s.
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
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))

from _load import closed_loop
from _runtime import free_port, start, start_runtime, stop, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

HERE = Path(__file__).parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5), counted after the name


@dataclass
class Totals:
    """One server at one concurrency, summed over the rounds."""

    requests: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    def row(self, name: str, concurrency: int) -> str:
        cpu_us = self.cpu / self.requests * 1e6
        return (
            f"| {name} | {concurrency} | {self.requests / self.seconds:,.0f} | {cpu_us:.0f} | "
            f"{statistics.median(self.p50):.3f} | {statistics.median(self.p99):.3f} |"
        )


async def one_round(address: str, pid: int, store: str, concurrency: int, seconds: float, totals: Totals) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        request = pb.GetStateRequest(store_name=store, key="bench")
        await closed_loop("warm-up", lambda: stub.GetState(request), concurrency, 0.3, warmup=0)
        before = cpu_seconds(pid)
        result = await closed_loop("", lambda: stub.GetState(request), concurrency, seconds, warmup=0)
        totals.cpu += cpu_seconds(pid) - before
    totals.requests += result.requests
    totals.seconds += result.seconds
    totals.p50.append(result.p50_ms)
    totals.p99.append(result.p99_ms)


async def run(rounds: int, seconds: float, concurrencies: list[int]) -> dict[tuple[str, int], Totals]:
    with tempfile.TemporaryDirectory() as data_dir:
        servers = {}  # name -> (process, address, store)
        for transport in ("grpcio", "native"):
            address = f"127.0.0.1:{free_port()}"
            servers[f"bare echo, {transport}"] = (
                start([sys.executable, str(HERE / "echo_server.py"), address, transport]),
                address,
                "",
            )
        for transport in ("grpcio", "native"):
            process, address = start_runtime(str(Path(data_dir) / transport), extra=["--grpc-transport", transport])
            servers[f"runtime in-memory GetState, {transport}"] = (process, address, "in-memory")
        try:
            for _, address, store in servers.values():
                await wait_ready(address)
                if store:
                    async with grpc.aio.insecure_channel(address) as channel:
                        item = pb.StateItem(key="bench", value=b"v" * 100)
                        await runtime_pb2_grpc.RuntimeStub(channel).SaveState(
                            pb.SaveStateRequest(store_name=store, states=[item])
                        )
            totals = {(name, c): Totals() for c in concurrencies for name in servers}
            for _ in range(rounds):
                for concurrency in concurrencies:
                    for name, (process, address, store) in servers.items():
                        await one_round(address, process.pid, store, concurrency, seconds, totals[name, concurrency])
            return totals
        finally:
            for process, _, _ in servers.values():
                stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="measured seconds per server, round and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    totals = asyncio.run(run(args.rounds, args.seconds, args.concurrency))
    print(
        f"GetState, {args.rounds} alternating rounds of {args.seconds:g} s, {started}, {platform.platform()}, "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} at the start, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}"
    )
    print("| server | concurrency | req/s | server CPU µs per call | p50 ms (median round) | p99 ms (median round) |")
    print("|---|---|---|---|---|---|")
    for (name, concurrency), total in totals.items():
        print(total.row(name, concurrency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
