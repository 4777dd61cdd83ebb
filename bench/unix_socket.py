"""GetState (in-memory) throughput and the runtime's CPU per request over a Unix domain socket and
over loopback TCP, two `layotto serve` processes in the same run, rounds alternating.

    python bench/unix_socket.py [--seconds 5] [--rounds 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult
from _runtime import start_runtime, stop, wait_ready
from tracing_overhead import measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    results: dict[str, list[LoadResult]] = {"TCP": [], "UDS": []}
    cpu: dict[str, list[float]] = {"TCP": [], "UDS": []}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump({"state": {"bench": {"type": "in-memory"}}}))
        socket_address = f"unix:{tmp}/grpc.sock"
        tcp, tcp_address = start_runtime(tmp, config)
        uds, _ = start_runtime(tmp, config, ["--grpc-address", socket_address])  # the last --grpc-address wins
        try:
            asyncio.run(wait_ready(tcp_address))
            asyncio.run(wait_ready(socket_address))
            for _ in range(args.rounds):
                for mode, process, address in (("TCP", tcp, tcp_address), ("UDS", uds, socket_address)):
                    name = f"GetState (in-memory), {mode}"
                    result, micros = asyncio.run(measure(process.pid, address, name, args.concurrency, args.seconds))
                    results[mode].append(result)
                    cpu[mode].append(micros)
        finally:
            for process in (tcp, uds):
                stop(process)
    load_after = os.getloadavg()
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.seconds:.0f} s per row, concurrency {args.concurrency}, {args.rounds} alternating rounds, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print("| operation | concurrency | req/s | p50 ms | p90 ms | p99 ms | runtime CPU µs/request |")
    print("|---|---|---|---|---|---|---|")
    for index in range(args.rounds):
        for mode in ("TCP", "UDS"):
            print(f"{results[mode][index].row()} {cpu[mode][index]:.0f} |")
    tcp_rps = sum(r.rps for r in results["TCP"]) / args.rounds
    uds_rps = sum(r.rps for r in results["UDS"]) / args.rounds
    tcp_cpu, uds_cpu = sum(cpu["TCP"]) / args.rounds, sum(cpu["UDS"]) / args.rounds
    print(f"throughput, UDS ÷ TCP: {uds_rps / tcp_rps:.3f}")
    print(f"runtime CPU per request, UDS ÷ TCP: {uds_cpu / tcp_cpu:.3f} ({uds_cpu:.0f} vs {tcp_cpu:.0f} µs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
