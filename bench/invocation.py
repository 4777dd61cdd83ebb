"""Service invocation: what two sidecars add to an app-to-app call.

Processes, on loopback: the callee app (the SDK's ``SubscriberApp`` answering ``echo`` through
Dapr's ``AppCallback/OnInvoke``, on grpc.aio), sidecar B (`layotto serve`, app id ``b``, that app
behind it) and sidecar A (app id ``a``, ``b`` resolved statically to B). The load generator (this
process) is the calling app. Two rows, in alternating rounds of one run so a change in the machine's
load hits both alike:

* ``direct``: the caller calls the callee app's ``OnInvoke`` itself;
* ``via sidecars``: the caller calls A's ``Runtime/InvokeService(id=b)``: app -> A -> B -> app;
* ``proxied``: Dapr's gRPC proxying, the caller calls the app's own ``AppCallback/OnInvoke`` on A
  with ``dapr-app-id: b`` metadata: A relays the raw call to B, B to the app.

Each at a fixed rate (500 req/s; p50/p90/p99 over the measured window) and closed-loop at
concurrency 16 (req/s). "Added" is the sidecars row minus the direct row (the median of each
round's percentile). CPU per call of each sidecar, the callee app and the caller (this process:
the load generator and its grpc.aio client, the price of one outgoing call) is utime + stime of the
whole process from /proc/PID/stat over the measured window, divided by the calls answered.
Payload: 1 KiB.

    python bench/invocation.py [--rounds 10] [--seconds 0.7] [--rate 500] [--grpc-transport auto|native|grpcio]

The load generator is grpc.aio in this process: it bounds req/s at concurrency 16.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop, fixed_rate
from _runtime import free_port, start, start_runtime, stop, wait_ready

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

TICK = os.sysconf("SC_CLK_TCK")
PAYLOAD = b"x" * 1024
LOADS = ("rate", "c16")
COUNTED = ("sidecar A", "sidecar B", "app", "caller")
Call = Callable[[], Awaitable[object]]

CALLEE_APP = textwrap.dedent("""
    import asyncio, sys
    from layotto.client import Invocation, SubscriberApp

    app = SubscriberApp()

    @app.method("echo")
    async def echo(call: Invocation) -> bytes:
        return call.data

    async def main() -> None:
        async with app.serve(sys.argv[1]):
            await asyncio.Event().wait()

    asyncio.run(main())
""")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Cell:
    """One row at one load, over the rounds; ``cpu``: seconds per counted process."""

    requests: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    p50: list[float] = field(default_factory=list)
    p90: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    def add(self, result: LoadResult, cpu: dict[str, float]) -> None:
        self.requests += result.requests
        self.seconds += result.seconds
        for name, seconds in cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        self.p50.append(result.p50_ms)
        self.p90.append(result.p90_ms)
        self.p99.append(result.p99_ms)

    def percentiles(self) -> tuple[float, float, float]:
        return statistics.median(self.p50), statistics.median(self.p90), statistics.median(self.p99)

    def cpu_us(self, name: str) -> float:
        return self.cpu.get(name, 0.0) / self.requests * 1e6


@dataclass(frozen=True)
class Row:
    name: str
    call: Call
    pids: dict[str, int]  # the processes whose CPU is counted, by name


async def measure(row: Row, load: str, seconds: float, rate: float, cell: Cell) -> None:
    concurrency = 16 if load == "c16" else 1
    await closed_loop("warm-up", row.call, concurrency, 0.2, warmup=0)
    before = {name: cpu_seconds(pid) for name, pid in row.pids.items()}
    if load == "rate":
        result = await fixed_rate(row.name, row.call, rate, seconds, warmup=0)
    else:
        result = await closed_loop(row.name, row.call, concurrency, seconds, warmup=0)
    cell.add(result, {name: cpu_seconds(pid) - before[name] for name, pid in row.pids.items()})


async def start_mesh(tmp: Path, transport: str) -> tuple[list[subprocess.Popen[bytes]], str, str, dict[str, int]]:
    """The callee app, sidecar B and sidecar A: the processes, the app's and A's addresses, pids."""
    app_address = f"127.0.0.1:{free_port()}"
    app = start([sys.executable, "-c", CALLEE_APP, app_address])
    await wait_ready(app_address)
    flags = ["--grpc-transport", transport]
    (tmp / "b.yaml").write_text(yaml.safe_dump({"app_id": "b", "app_callback_address": app_address}))
    b, b_address = start_runtime(str(tmp / "b"), tmp / "b.yaml", flags)
    await wait_ready(b_address)
    a_config = {"app_id": "a", "name_resolution": {"type": "static", "apps": {"b": [b_address]}}}
    (tmp / "a.yaml").write_text(yaml.safe_dump(a_config))
    a, a_address = start_runtime(str(tmp / "a"), tmp / "a.yaml", flags)
    await wait_ready(a_address)
    return (
        [a, b, app],
        app_address,
        a_address,
        {"sidecar A": a.pid, "sidecar B": b.pid, "app": app.pid, "caller": os.getpid()},
    )


async def run(rounds: int, seconds: float, rate: float, transport: str) -> dict[tuple[str, str], Cell]:
    with tempfile.TemporaryDirectory() as tmp:
        processes, app_address, a_address, pids = await start_mesh(Path(tmp), transport)
        try:
            async with grpc.aio.insecure_channel(app_address) as to_app, grpc.aio.insecure_channel(a_address) as to_a:
                on_invoke = appcallback_pb2_grpc.AppCallbackStub(to_app).OnInvoke
                direct = common_pb2.InvokeRequest(method="echo", content_type="application/octet-stream")
                direct.data.value = PAYLOAD
                invoke = runtime_pb2_grpc.RuntimeStub(to_a).InvokeService
                via = pb.InvokeServiceRequest(id="b")
                via.message.method, via.message.content_type = "echo", "application/octet-stream"
                via.message.data.value = PAYLOAD
                proxied = appcallback_pb2_grpc.AppCallbackStub(to_a).OnInvoke
                to_b = (("dapr-app-id", "b"),)
                rows = [
                    Row("direct", lambda: on_invoke(direct), {"app": pids["app"], "caller": pids["caller"]}),
                    Row("via sidecars", lambda: invoke(via), pids),
                    Row("proxied", lambda: proxied(direct, metadata=to_b), pids),
                ]
                assert (await invoke(via)).data.value == PAYLOAD  # the echo makes the whole trip
                assert (await proxied(direct, metadata=to_b)).data.value == PAYLOAD
                cells = {(row.name, load): Cell() for row in rows for load in LOADS}
                for _ in range(rounds):
                    for load in LOADS:
                        for row in rows:
                            await measure(row, load, seconds, rate, cells[row.name, load])
                return cells
        finally:
            for process in processes:
                stop(process)


def table(cells: dict[tuple[str, str], Cell], rate: float) -> list[str]:
    lines = [
        f"| path | p50 / p90 / p99 ms at {rate:.0f} req/s | req/s at c16 | "
        f"CPU µs per call at {rate:.0f} req/s: {' / '.join(COUNTED)} | same at c16 |",
        "|---|---|---|---|---|",
    ]
    for name in ("direct", "via sidecars", "proxied"):
        at_rate, c16 = cells[name, "rate"], cells[name, "c16"]
        latency = " / ".join(f"{v:.2f}" for v in at_rate.percentiles())
        cpu = [" / ".join(f"{c.cpu_us(p):.0f}" if p in c.cpu else "—" for p in COUNTED) for c in (at_rate, c16)]
        lines.append(f"| {name} | {latency} | {c16.requests / c16.seconds:,.0f} | {cpu[0]} | {cpu[1]} |")
    direct = cells["direct", "rate"].percentiles()
    for name, label in (("via sidecars", "added by two sidecars"), ("proxied", "added by proxying")):
        added = [v - d for v, d in zip(cells[name, "rate"].percentiles(), direct, strict=True)]
        lines.append(f"| {label} | {' / '.join(f'{v:+.2f}' for v in added)} | | | |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.7, help="measured seconds per row, round and load")
    parser.add_argument("--rate", type=float, default=500.0, help="the fixed rate, in requests per second")
    parser.add_argument("--grpc-transport", default="auto", choices=("auto", "native", "grpcio"))
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    cells = asyncio.run(run(args.rounds, args.seconds, args.rate, args.grpc_transport))
    print(
        f"{args.rounds} alternating rounds of {args.seconds:g} s per row and load, sidecars on grpc_transport "
        f"{args.grpc_transport}, {started}, {platform.platform()}, {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}"
    )
    print("\n".join(table(cells, args.rate)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
