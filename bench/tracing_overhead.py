"""GetState throughput through `layotto serve` with tracing off and with tracing on at a
sampling ratio of 1.0 (OTLP to a collector in another process), in the same run, rounds
alternating; plus the cost of the tracing hooks that stay in the request path when
tracing is off.

    python bench/tracing_overhead.py [--seconds 5] [--rounds 2] [--store in-memory|redis]
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
import timeit
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop
from _runtime import start_runtime, stop, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.tracing import backend_span, current_traceparent

# A collector that accepts OTLP exports without decoding them: the spans' cost on this box is
# then the runtime's own (a real collector runs elsewhere).
COLLECTOR = textwrap.dedent("""
    import time
    from concurrent import futures
    import grpc
    def export(request, context):
        return b""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(export)  # raw bytes in, empty response out
    service = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler})
    server.add_generic_rpc_handlers((service,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    while True:
        time.sleep(60)
""")


def runtime_config(directory: Path, store: str, otlp: str | None, ratio: float = 1.0) -> Path:
    metadata = {"redisHost": "127.0.0.1:6379"} if store == "redis" else {}
    body: dict[str, object] = {"state": {"bench": {"type": store, "metadata": metadata}}}
    if otlp:
        body["tracing"] = {"exporters": ["otlp"], "otlp_endpoint": otlp, "sampling_ratio": ratio}
    path = directory / f"{'on' if otlp else 'off'}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(pid: int, address: str, name: str, concurrency: int, seconds: float) -> tuple[LoadResult, float]:
    """The load result and the server's CPU microseconds per request over the measured window."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await stub.SaveState(pb.SaveStateRequest(store_name="bench", states=[pb.StateItem(key="k", value=b"v")]))
        request = pb.GetStateRequest(store_name="bench", key="k")
        await closed_loop(name, lambda: stub.GetState(request), concurrency, 1.0, warmup=0.0)
        cpu_before = cpu_seconds(pid)
        result = await closed_loop(name, lambda: stub.GetState(request), concurrency, seconds, warmup=0.0)
        return result, (cpu_seconds(pid) - cpu_before) / result.requests * 1e6


def off_path_nanoseconds() -> float:
    """What a request pays for tracing when it is off: the hooks the runtime keeps in its path."""

    def hooks() -> None:
        with backend_span("redis", "HGET", peer="127.0.0.1", port=6379):
            pass
        current_traceparent()

    runs = 200_000
    return timeit.timeit(hooks, number=runs) / runs * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--store", default="in-memory", choices=["in-memory", "redis"])
    parser.add_argument("--ratio", type=float, default=1.0, help="sampling ratio of the traced runtime")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()[0]
    collector = subprocess.Popen([sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True)
    assert collector.stdout is not None
    otlp = f"http://127.0.0.1:{collector.stdout.readline().strip()}"
    results: dict[str, list[LoadResult]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        off, off_address = start_runtime(tmp, runtime_config(Path(tmp), args.store, None))
        on, on_address = start_runtime(tmp, runtime_config(Path(tmp), args.store, otlp, args.ratio))
        try:
            asyncio.run(wait_ready(off_address))
            asyncio.run(wait_ready(on_address))
            for _ in range(args.rounds):
                for mode, process, address in (("off", off, off_address), ("on", on, on_address)):
                    suffix = f", ratio {args.ratio}" if mode == "on" else ""
                    name = f"GetState ({args.store}), tracing {mode}{suffix}"
                    result, micros = asyncio.run(measure(process.pid, address, name, args.concurrency, args.seconds))
                    results[mode].append(result)
                    cpu[mode].append(micros)
        finally:
            for process in (off, on):
                stop(process)
            collector.kill()
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.seconds:.0f} s per row, concurrency {args.concurrency}, {args.rounds} alternating rounds; "
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print("| operation | concurrency | req/s | p50 ms | p90 ms | p99 ms | runtime CPU µs/request |")
    print("|---|---|---|---|---|---|---|")
    for index in range(args.rounds):
        for mode in ("off", "on"):
            print(f"{results[mode][index].row()} {cpu[mode][index]:.0f} |")
    off_rps = sum(r.rps for r in results["off"]) / args.rounds
    on_rps = sum(r.rps for r in results["on"]) / args.rounds
    hooks_ns = off_path_nanoseconds()
    per_request_ns = 1e9 / off_rps  # the server is CPU-bound: each request costs 1/throughput of CPU
    print(f"tracing on (ratio {args.ratio}) costs {1 - on_rps / off_rps:.1%} of throughput")
    off_cpu, on_cpu = sum(cpu["off"]) / args.rounds, sum(cpu["on"]) / args.rounds
    print(
        f"tracing on (ratio {args.ratio}) costs the runtime {on_cpu - off_cpu:.0f} µs more CPU per request: "
        f"{on_cpu / off_cpu - 1:.1%} over {off_cpu:.0f} µs"
    )
    off_median, on_median = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    print(
        f"median CPU per request {off_median:.0f} µs off, {on_median:.0f} µs on: a CPU-bound runtime serves "
        f"{off_median / on_median:.2f} of its throughput with tracing on (the figure that holds on a busy machine)"
    )
    print(
        f"tracing off: the hooks left in the path cost {hooks_ns:.0f} ns per request, "
        f"{hooks_ns / per_request_ns:.2%} of the {per_request_ns / 1000:.0f} µs of CPU a request takes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
