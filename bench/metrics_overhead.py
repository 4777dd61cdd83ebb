"""GetState throughput and the runtime's CPU per request through `layotto serve` with metrics off and
on (``metrics: {enabled: ...}``), in the same run, rounds alternating; target: on ÷ off ≥ 0.95.

    python bench/metrics_overhead.py [--seconds 5] [--rounds 4] [--concurrency 16]
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


def runtime_config(directory: Path, enabled: bool) -> Path:
    body = {"state": {"bench": {"type": "in-memory"}}, "metrics": {"enabled": enabled}}
    path = directory / f"metrics-{'on' if enabled else 'off'}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    results: dict[str, list[LoadResult]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        off, off_address = start_runtime(tmp, runtime_config(Path(tmp), enabled=False))
        on, on_address = start_runtime(tmp, runtime_config(Path(tmp), enabled=True))
        try:
            asyncio.run(wait_ready(off_address))
            asyncio.run(wait_ready(on_address))
            for _ in range(args.rounds):
                for mode, process, address in (("off", off, off_address), ("on", on, on_address)):
                    name = f"GetState (in-memory), metrics {mode}"
                    result, micros = asyncio.run(measure(process.pid, address, name, args.concurrency, args.seconds))
                    results[mode].append(result)
                    cpu[mode].append(micros)
        finally:
            for process in (off, on):
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
        for mode in ("off", "on"):
            print(f"{results[mode][index].row()} {cpu[mode][index]:.0f} |")
    off_rps = sum(r.rps for r in results["off"]) / args.rounds
    on_rps = sum(r.rps for r in results["on"]) / args.rounds
    off_cpu, on_cpu = sum(cpu["off"]) / args.rounds, sum(cpu["on"]) / args.rounds
    print(f"throughput, metrics on ÷ off: {on_rps / off_rps:.3f} (target ≥ 0.95)")
    print(f"runtime CPU per request, metrics on ÷ off: {on_cpu / off_cpu:.3f} ({on_cpu:.0f} vs {off_cpu:.0f} µs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
