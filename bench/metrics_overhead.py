"""GetState throughput and the runtime's CPU per request through `layotto serve` with metrics off and
on (``metrics: {enabled: ...}``), in the same run, rounds alternating; target: on ÷ off ≥ 0.95.

The primary figure is the runtime's CPU per request from /proc (every thread of the process), which
other processes on a shared machine disturb far less than throughput; the event loop thread's share
(where all of the metrics' work runs) is printed beside it.

    python bench/metrics_overhead.py [--seconds 3] [--rounds 5] [--concurrency 16]
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
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop
from _runtime import start_runtime, stop, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Round:
    load: LoadResult
    process_us: float  # the runtime process's CPU per request (every thread)
    loop_us: float  # its main thread's (the event loop's) CPU per request


def cpu_seconds(stat: Path) -> float:
    """utime + stime from a /proc ``stat`` file (a process's or one thread's)."""
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def measure(pid: int, address: str, name: str, concurrency: int, seconds: float) -> Round:
    """One round: a 1 s warm-up, then ``seconds`` of GetState load, with the server's CPU over the window."""
    process, loop = Path(f"/proc/{pid}/stat"), Path(f"/proc/{pid}/task/{pid}/stat")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await stub.SaveState(pb.SaveStateRequest(store_name="bench", states=[pb.StateItem(key="k", value=b"v")]))
        request = pb.GetStateRequest(store_name="bench", key="k")
        await closed_loop(name, lambda: stub.GetState(request), concurrency, 1.0, warmup=0.0)
        before = cpu_seconds(process), cpu_seconds(loop)
        result = await closed_loop(name, lambda: stub.GetState(request), concurrency, seconds, warmup=0.0)
        after = cpu_seconds(process), cpu_seconds(loop)
    per_request = 1e6 / result.requests
    return Round(result, (after[0] - before[0]) * per_request, (after[1] - before[1]) * per_request)


def runtime_config(directory: Path, enabled: bool) -> Path:
    body = {"state": {"bench": {"type": "in-memory"}}, "metrics": {"enabled": enabled}}
    path = directory / f"metrics-{'on' if enabled else 'off'}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    rounds: dict[str, list[Round]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        off, off_address = start_runtime(tmp, runtime_config(Path(tmp), enabled=False))
        on, on_address = start_runtime(tmp, runtime_config(Path(tmp), enabled=True))
        try:
            asyncio.run(wait_ready(off_address))
            asyncio.run(wait_ready(on_address))
            for index in range(args.rounds):
                order = (("off", off, off_address), ("on", on, on_address))
                for mode, process, address in order if index % 2 == 0 else order[::-1]:
                    name = f"GetState (in-memory), metrics {mode}"
                    rounds[mode].append(
                        asyncio.run(measure(process.pid, address, name, args.concurrency, args.seconds))
                    )
        finally:
            for process in (off, on):
                stop(process)
    load_after = os.getloadavg()
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.seconds:.0f} s per row, concurrency {args.concurrency}, {args.rounds} alternating rounds, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print("| operation | concurrency | req/s | p50 ms | p90 ms | p99 ms | runtime CPU µs/request | loop thread µs |")
    print("|---|---|---|---|---|---|---|---|")
    for index in range(args.rounds):
        for mode in ("off", "on"):
            row = rounds[mode][index]
            print(f"{row.load.row()} {row.process_us:.1f} | {row.loop_us:.1f} |")

    def mean(mode: str, field: str) -> float:
        return statistics.fmean(getattr(r, field) if field != "rps" else r.load.rps for r in rounds[mode])

    print(f"throughput, metrics on ÷ off: {mean('on', 'rps') / mean('off', 'rps'):.3f} (target ≥ 0.95)")
    for field, what in (("process_us", "runtime CPU per request"), ("loop_us", "event loop thread CPU per request")):
        on_us, off_us = mean("on", field), mean("off", field)
        pairs = [getattr(a, field) / getattr(b, field) for a, b in zip(rounds["on"], rounds["off"], strict=True)]
        print(
            f"{what}, metrics on ÷ off: {on_us / off_us:.3f} ({on_us:.1f} vs {off_us:.1f} µs; "
            f"per round {min(pairs):.3f} to {max(pairs):.3f}); capacity by CPU, off ÷ on: {off_us / on_us:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
