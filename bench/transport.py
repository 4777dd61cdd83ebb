"""The two gRPC transports side by side: bare echoes, and the runtime's calls on each transport.

Servers, each a child process on loopback: a bare GetState echo on grpc.aio and on pygrpc-native
(bench/echo_server.py), and `layotto serve` with ``--grpc-transport grpcio`` and ``native``, both
with the in-memory, Redis and PostgreSQL state stores and the Redis pub/sub. Measured: the echoes,
and on each runtime in-memory GetState, Redis and PostgreSQL GetState/SaveState and PublishEvent
on Redis; beside them the same Redis and PostgreSQL operations straight through the async driver
(redis-py, psycopg), the floor under "added p90". Every row is run at concurrency 1, 16 and a fixed
rate (500 req/s), in alternating rounds of one run (every row once per round and load), so a change
in the machine's load hits all of them alike.

The primary figure is the server's CPU per call: utime + stime of the whole server process (all its
threads) from /proc/PID/stat over the measured window, divided by the calls answered (the driver
rows have no server process of ours: their CPU is the Redis or PostgreSQL server's, not counted).
Latencies are the median over rounds of each round's p50/p90/p99. Usage (backends up first):

    scripts/backends up redis postgres
    python bench/transport.py [--rounds 2] [--seconds 1.5] [--rate 500] [--only REGEX] [--without-hiredis]

``--only``: the rows whose name matches (e.g. ``"redis GetState|bare echo native"``; the driver rows
of the operations kept stay for "added p90"). ``--without-hiredis``: one more runtime on native whose
redis-py cannot import hiredis (its pure-Python parser), rows "runtime native-no-hiredis: ...".

The load generator is this process (grpc.aio): its own CPU is not counted, but it bounds req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop, fixed_rate
from _runtime import free_port, start, start_runtime, stop, wait_ready
from state_backends import PG_DSN, VALUE, direct_calls

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

HERE = Path(__file__).parent
TICK = os.sysconf("SC_CLK_TCK")
TRANSPORTS = ("grpcio", "native")
Call = Callable[[], Awaitable[object]]
ECHO_REQUEST = pb.GetStateRequest(key="bench")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5), counted after the name


@dataclass
class Cell:
    """One row (a call on one server) at one load, over the rounds."""

    requests: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    p50: list[float] = field(default_factory=list)
    p90: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    def add(self, result: LoadResult, cpu: float) -> None:
        self.requests += result.requests
        self.seconds += result.seconds
        self.cpu += cpu
        self.p50.append(result.p50_ms)
        self.p90.append(result.p90_ms)
        self.p99.append(result.p99_ms)

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6

    @property
    def p90_ms(self) -> float:
        return statistics.median(self.p90)


@dataclass(frozen=True)
class Row:
    """A call to measure: ``pid`` is the server process whose CPU is counted (None: the driver itself)."""

    name: str
    call: Call
    pid: int | None


LOADS = ("c1", "c16", "rate")


async def measure(row: Row, load: str, seconds: float, rate: float, cell: Cell) -> None:
    concurrency = 16 if load == "c16" else 1
    await closed_loop("warm-up", row.call, concurrency, 0.2, warmup=0)
    before = cpu_seconds(row.pid) if row.pid is not None else 0.0
    if load == "rate":
        result = await fixed_rate(row.name, row.call, rate, seconds, warmup=0)
    else:
        result = await closed_loop(row.name, row.call, concurrency, seconds, warmup=0)
    cell.add(result, cpu_seconds(row.pid) - before if row.pid is not None else 0.0)


def runtime_config(directory: Path) -> Path:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    redis = "127.0.0.1:6379"
    config = {
        "state": {
            "in-memory": {"type": "in-memory"},
            "redis": {"type": "redis", "metadata": {"redisHost": redis, "keyPrefix": prefix}},
            "postgresql": {"type": "postgresql", "metadata": {"connectionString": PG_DSN, "tableName": "bench_state"}},
        },
        "pubsub": {"redis": {"type": "redis", "metadata": {"redisHost": redis, "maxLenApprox": "10000"}}},
    }
    path = directory / "bench-runtime.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def runtime_rows(transport: str, channel: grpc.aio.Channel, pid: int) -> list[Row]:
    stub = runtime_pb2_grpc.RuntimeStub(channel)

    def get(store: str) -> Call:
        request = pb.GetStateRequest(store_name=store, key="bench")
        return lambda: stub.GetState(request)

    def save(store: str) -> Call:
        request = pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key="bench", value=VALUE)])
        return lambda: stub.SaveState(request)

    publish = pb.PublishEventRequest(pubsub_name="redis", topic="bench-transport", data=VALUE)
    calls = {
        "in-memory GetState": get("in-memory"),
        "redis GetState": get("redis"),
        "redis SaveState": save("redis"),
        "postgresql GetState": get("postgresql"),
        "postgresql SaveState": save("postgresql"),
        "redis PublishEvent": lambda: stub.PublishEvent(publish),
    }
    return [Row(f"runtime {transport}: {op}", call, pid) for op, call in calls.items()]


async def direct_rows() -> tuple[list[Row], list[Callable[[], Awaitable[None]]]]:
    rows, closers = [], []
    for backend in ("redis", "postgresql"):
        get, save, close = await direct_calls(backend)
        rows += [Row(f"driver: {backend} GetState", get, None), Row(f"driver: {backend} SaveState", save, None)]
        closers.append(close)
    import redis.asyncio as aioredis

    client = aioredis.Redis()
    rows.append(
        Row(
            "driver: redis PublishEvent",
            lambda: client.xadd("bench-transport-direct", {b"data": VALUE}, maxlen=10000, approximate=True),
            None,
        )
    )
    closers.append(client.aclose)
    return rows, closers


def start_without_hiredis(tmp: Path, config: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The runtime on native with an importable ``hiredis`` that fails, so redis-py parses in Python."""
    shim = tmp / "no-hiredis"
    shim.mkdir()
    (shim / "hiredis.py").write_text("raise ImportError('hiredis hidden by bench/transport.py')\n")
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), previous]))
    try:
        return start_runtime(str(tmp / "no-hiredis-data"), config, ["--grpc-transport", "native"])
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


async def run(
    rounds: int, seconds: float, rate: float, only: str = "", without_hiredis: bool = False
) -> dict[tuple[str, str], Cell]:
    processes: list[subprocess.Popen[bytes]] = []
    channels: list[grpc.aio.Channel] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = runtime_config(Path(tmp))
        try:
            rows: list[Row] = []
            for transport in TRANSPORTS:
                address = f"127.0.0.1:{free_port()}"
                process = start([sys.executable, str(HERE / "echo_server.py"), address, transport])
                processes.append(process)
                await wait_ready(address)
                channels.append(grpc.aio.insecure_channel(address))
                echo = runtime_pb2_grpc.RuntimeStub(channels[-1]).GetState
                rows.append(Row(f"bare echo {transport}", lambda echo=echo: echo(ECHO_REQUEST), process.pid))
            for transport in TRANSPORTS:
                process, address = start_runtime(str(Path(tmp) / transport), config, ["--grpc-transport", transport])
                processes.append(process)
                await wait_ready(address)
                channels.append(grpc.aio.insecure_channel(address))
                rows += runtime_rows(transport, channels[-1], process.pid)
            if without_hiredis:
                process, address = start_without_hiredis(Path(tmp), config)
                processes.append(process)
                await wait_ready(address)
                channels.append(grpc.aio.insecure_channel(address))
                rows += runtime_rows("native-no-hiredis", channels[-1], process.pid)
            direct, closers = await direct_rows()
            rows += direct
            rows = [row for row in rows if re.search(only, row.name)]
            for row in rows:
                if "SaveState" in row.name:
                    await row.call()  # the key exists before the first GetState
            cells = {(row.name, load): Cell() for row in rows for load in LOADS}
            for _ in range(rounds):
                for load in LOADS:
                    for row in rows:
                        await measure(row, load, seconds, rate, cells[row.name, load])
            for close in closers:
                await close()
            return cells
        finally:
            for channel in channels:
                await channel.close()
            for process in processes:
                stop(process)


def table(cells: dict[tuple[str, str], Cell], rate: float) -> list[str]:
    lines = [
        f"| call | server CPU µs per call, c1 / c16 / {rate:.0f} req/s | req/s c1 / c16 | "
        f"p50 / p90 / p99 ms, c1 | p50 / p90 / p99 ms, c16 | p50 / p90 / p99 ms, {rate:.0f} req/s | "
        f"added p90 ms at {rate:.0f} req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    names = list(dict.fromkeys(name for name, _ in cells))
    for name in names:
        by_load = [cells[name, load] for load in LOADS]
        cpu = " / ".join(f"{c.cpu_us:.0f}" for c in by_load) if not name.startswith("driver") else "—"
        rps = " / ".join(f"{c.requests / c.seconds:,.0f}" for c in by_load[:2])
        lat = [" / ".join(f"{statistics.median(v):.2f}" for v in (c.p50, c.p90, c.p99)) for c in by_load]
        op = name.split(": ", 1)[-1]
        direct = cells.get((f"driver: {op}", "rate"))
        added = f"{by_load[2].p90_ms - direct.p90_ms:.2f}" if direct is not None and name.startswith("runtime") else ""
        lines.append(f"| {name} | {cpu} | {rps} | {lat[0]} | {lat[1]} | {lat[2]} | {added} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.5, help="measured seconds per row, round and load")
    parser.add_argument("--rate", type=float, default=500.0, help="the fixed rate, in requests per second")
    parser.add_argument("--only", default="", help="measure only the rows whose name matches this regex")
    parser.add_argument("--without-hiredis", action="store_true", help="add a native runtime without hiredis")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    cells = asyncio.run(run(args.rounds, args.seconds, args.rate, args.only, args.without_hiredis))
    print(
        f"{args.rounds} alternating rounds of {args.seconds:g} s per row and load, {started}, {platform.platform()}, "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}"
    )
    print("\n".join(table(cells, args.rate)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
