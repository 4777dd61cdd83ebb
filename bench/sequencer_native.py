"""GetNextId WEAK (the runtime's block cache) vs STRONG on Redis, driven by the native load
generator (bench/loadgen, Go), in alternating rounds. See bench/state_backends_native.py for why
a native client: with a Python client, the client's own cost caps WEAK's figure.

    scripts/backends up redis
    python bench/sequencer_native.py [--seconds 5] [--rounds 3] [--concurrency 16]
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

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult
from _runtime import start_runtime, stop, wait_ready
from lock_sequencer import config
from state_backends_native import build_loadgen, drive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    results: dict[str, list[LoadResult]] = {"STRONG": [], "WEAK": []}
    with tempfile.TemporaryDirectory() as tmp:
        loadgen = build_loadgen(Path(tmp))
        runtime, address = start_runtime(tmp, config(Path(tmp)))
        try:
            asyncio.run(wait_ready(address))
            for _ in range(args.rounds):
                for mode in ("STRONG", "WEAK"):
                    name = f"GetNextId {mode} (redis{', block cache' if mode == 'WEAK' else ''})"
                    op = f"grpc-nextid-{mode.lower()}"
                    results[mode].append(
                        drive(
                            loadgen,
                            name,
                            op,
                            address,
                            concurrency=args.concurrency,
                            rate=0,
                            seconds=args.seconds,
                            store="redis",
                            key="bench",
                        )
                    )
        finally:
            stop(runtime)
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.seconds:.0f} s per row, {args.rounds} alternating rounds, Go load generator (bench/loadgen)"
    )
    print("| operation | concurrency | ids/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for strong, weak in zip(results["STRONG"], results["WEAK"], strict=True):
        print(strong.row())
        print(weak.row())
    strong_rps = sum(r.rps for r in results["STRONG"]) / args.rounds
    weak_rps = sum(r.rps for r in results["WEAK"]) / args.rounds
    print(f"WEAK reaches {weak_rps / strong_rps:.2f}x STRONG's throughput")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
