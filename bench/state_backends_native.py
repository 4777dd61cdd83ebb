"""GetState and SaveState on Redis and PostgreSQL, driven by a native load generator.

The same three things as bench/state_backends.py — the operation straight through a driver,
the minimal Python sidecar, and the runtime — but every request comes from
``bench/loadgen`` (Go: grpc-go with pre-encoded requests, go-redis, pgx), the way Dapr's
own performance tests drive daprd with a Go load tester. A Python load generator spends
more CPU per request than the server it measures and adds its own share to every round
trip; this one does not, so the figures show what the sidecar adds. Needs Go (``go build``
runs on first use; modules come from the Go module proxy).

    scripts/backends up redis postgres
    python bench/state_backends_native.py [--seconds 5] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult
from _runtime import free_port, start_runtime, wait_ready
from state_backends import PG_DSN, runtime_config

HERE = Path(__file__).parent
DIRECT = {"redis": ("redis", "127.0.0.1:6379", "bench:direct"), "postgresql": ("pg", PG_DSN, "k")}


def build_loadgen(directory: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        raise SystemExit("state_backends_native: needs Go on PATH to build bench/loadgen")
    binary = directory / "loadgen"
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=HERE / "loadgen", check=True)
    return binary


def drive(
    loadgen: Path,
    name: str,
    op: str,
    target: str,
    *,
    concurrency: int,
    rate: float,
    seconds: float,
    store: str = "",
    key: str = "bench",
) -> LoadResult:
    command = [str(loadgen), "-op", op, "-target", target, "-store", store, "-key", key, "-seconds", str(seconds)]
    command += ["-rate", str(rate)] if rate else ["-concurrency", str(concurrency)]
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return LoadResult(
        name, out["concurrency"], out["requests"], out["seconds"], out["p50_ms"], out["p90_ms"], out["p99_ms"]
    )


def measure_backend(
    loadgen: Path, backend: str, runtime: str, sidecar: str, seconds: float, rate: float, concurrencies: list[int]
) -> list[LoadResult]:
    prefix, direct_target, direct_key = DIRECT[backend]
    results = []
    for op, verb in (("GetState", "get"), ("SaveState", "save")):
        rows = (
            (f"{backend} {op}: driver directly (Go)", f"{prefix}-{verb}", direct_target, "", direct_key),
            (f"{backend} {op}: minimal sidecar", f"grpc-{verb}", sidecar, "", direct_key),
            (f"{backend} {op}: runtime", f"grpc-{verb}", runtime, backend, "bench"),
        )
        for concurrency in concurrencies:
            for name, gen_op, target, store, key in rows:
                results.append(
                    drive(
                        loadgen,
                        name,
                        gen_op,
                        target,
                        concurrency=concurrency,
                        rate=0,
                        seconds=seconds,
                        store=store,
                        key=key,
                    )
                )
        for name, gen_op, target, store, key in rows:
            results.append(
                drive(loadgen, name, gen_op, target, concurrency=0, rate=rate, seconds=seconds, store=store, key=key)
            )
    return results


def run(seconds: float, rate: float, concurrencies: list[int]) -> list[LoadResult]:
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        loadgen = build_loadgen(Path(tmp))
        runtime, runtime_address = start_runtime(tmp, runtime_config(Path(tmp)))
        try:
            asyncio.run(wait_ready(runtime_address))
            for backend in ("redis", "postgresql"):
                sidecar_address = f"127.0.0.1:{free_port()}"
                sidecar = subprocess.Popen([sys.executable, str(HERE / "minimal_sidecar.py"), sidecar_address, backend])
                try:
                    asyncio.run(wait_ready(sidecar_address))
                    results += measure_backend(
                        loadgen, backend, runtime_address, sidecar_address, seconds, rate, concurrencies
                    )
                finally:
                    sidecar.send_signal(signal.SIGTERM)
                    sidecar.wait(timeout=20)
        finally:
            runtime.send_signal(signal.SIGTERM)
            runtime.wait(timeout=20)
    return results


def summary(results: list[LoadResult]) -> list[str]:
    lines = []
    for backend in ("redis", "postgresql"):
        for op in ("GetState", "SaveState"):
            rows = {(r.name.split(": ")[1], r.concurrency): r for r in results if r.name.startswith(f"{backend} {op}:")}
            direct = rows[("driver directly (Go)", 0)].p90_ms
            added = rows[("runtime", 0)].p90_ms - direct
            floor = rows[("minimal sidecar", 0)].p90_ms - direct
            ratio = rows[("runtime", 16)].rps / rows[("minimal sidecar", 16)].rps
            lines.append(
                f"{backend} {op}: added p90 at the fixed rate = {added:.3f} ms (minimal sidecar: {floor:.3f} ms); "
                f"at concurrency 16 the runtime reaches {ratio:.0%} of the minimal sidecar's req/s"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    if 16 not in args.concurrency:
        parser.error("--concurrency must include 16 (the summary's throughput ratio)")
    started = time.strftime("%Y-%m-%d %H:%M")
    results = run(args.seconds, args.rate, args.concurrency)
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.seconds:.0f} s per row, Go load generator (bench/loadgen)"
    )
    print("| what | concurrency (0: fixed rate) | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    for line in summary(results):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
