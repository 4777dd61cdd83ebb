"""Optional: Dapr's own sidecar (daprd, built from Dapr's source) beside this runtime, Redis GetState
and SaveState through Dapr's gRPC API (``dapr.proto.runtime.v1.Dapr``) on both, the same Redis, the
same load generator (this process, grpc.aio), in alternating rounds. The figure is each sidecar's
CPU per call: utime + stime of its whole process from /proc/PID/stat over the measured window.

daprd is not a dependency of anything: build it once into a cache directory outside the repository
(the Go module proxy serves Dapr's module; its go.mod has replace directives, so it is built from a
small wrapper module that repeats them; the component registry needs ``-tags stablecomponents``):

    mkdir -p ~/.cache/layotto-bench/daprd && cd ~/.cache/layotto-bench/daprd
    printf 'module daprdbuild\\n\\ngo 1.22.6\\n\\nrequire github.com/dapr/dapr v1.14.0\\n' > go.mod
    # append the replace (...) blocks of github.com/dapr/dapr@v1.14.0's go.mod to go.mod, then:
    GOFLAGS=-mod=mod go build -tags stablecomponents -o daprd github.com/dapr/dapr/cmd/daprd
    python bench/daprd_compare.py --daprd ~/.cache/layotto-bench/daprd/daprd [--rounds 3] [--seconds 2]

Without ``--daprd`` (or ``$DAPRD``) it says so and exits 0: CI never needs it.
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
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import closed_loop
from _runtime import free_port, start, start_runtime, stop, wait_ready
from transport import cpu_seconds

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, state_pb2

REDIS = "127.0.0.1:6379"
STORE = "redis"
COMPONENT = f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {STORE}
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{REDIS}"
  - name: redisPassword
    value: ""
"""


def start_daprd(daprd: str, directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """daprd in standalone mode with the Redis state store, no app, no placement: process, gRPC address."""
    resources = directory / "resources"
    resources.mkdir()
    (resources / "redis.yaml").write_text(COMPONENT)
    grpc_port = free_port()
    command = [daprd, "--app-id", "bench", "--mode", "standalone", "--resources-path", str(resources)]
    command += ["--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(free_port())]
    command += ["--dapr-internal-grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    command += ["--enable-metrics=false", "--log-level", "warn", "--placement-host-address", ""]
    return start(command), f"127.0.0.1:{grpc_port}"


async def measure(
    address: str, pid: int, rounds: int, seconds: float, concurrency: int
) -> dict[str, list[tuple[float, float]]]:
    """Per operation, each round's (server CPU µs per call, req/s)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        item = common_pb2.StateItem(key="bench", value=b"v" * 100)
        save = state_pb2.SaveStateRequest(store_name=STORE, states=[item])
        get = state_pb2.GetStateRequest(store_name=STORE, key="bench")
        await stub.SaveState(save)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "GetState": lambda: stub.GetState(get),
            "SaveState": lambda: stub.SaveState(save),
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
        for name, call in calls.items():
            await closed_loop(name, call, concurrency, 0.5, warmup=0.0)
            before = cpu_seconds(pid)
            result = await closed_loop(name, call, concurrency, seconds, warmup=0.0)
            figures[name].append(((cpu_seconds(pid) - before) / result.requests * 1e6, result.rps))
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--daprd", default=os.environ.get("DAPRD", ""), help="path of a daprd binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if not args.daprd or not Path(args.daprd).is_file():
        print("no daprd given (--daprd PATH or $DAPRD): nothing to compare; see this script's docstring")
        return 0
    load_before, started = os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M")
    results: dict[str, dict[str, list[tuple[float, float]]]] = {"daprd": {}, "layotto native": {}}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "layotto.yaml"
        config.write_text(yaml.safe_dump({"state": {STORE: {"type": "redis", "metadata": {"redisHost": REDIS}}}}))
        daprd, daprd_address = start_daprd(args.daprd, Path(tmp))
        ours, ours_address = start_runtime(tmp, config, ["--grpc-transport", "native"])
        try:
            asyncio.run(wait_ready(daprd_address))
            asyncio.run(wait_ready(ours_address))
            for _ in range(args.rounds):
                for name, process, address in (
                    ("daprd", daprd, daprd_address),
                    ("layotto native", ours, ours_address),
                ):
                    got = asyncio.run(measure(address, process.pid, 1, args.seconds, args.concurrency))
                    for operation, figures in got.items():
                        results[name].setdefault(operation, []).extend(figures)
        finally:
            stop(ours)
            stop(daprd)
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores; concurrency {args.concurrency}, "
        f"{args.rounds} alternating rounds of {args.seconds:g} s; load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print("| call | sidecar CPU µs per call, median (rounds) | req/s, median | ÷ daprd |")
    print("|---|---|---|---|")
    for operation in ("GetState", "SaveState"):
        base = statistics.median(cpu for cpu, _ in results["daprd"][operation])
        for name in ("daprd", "layotto native"):
            figures = results[name][operation]
            cpu = statistics.median(c for c, _ in figures)
            rps = statistics.median(r for _, r in figures)
            rounds = " / ".join(f"{c:.0f}" for c, _ in figures)
            print(f"| redis {operation}, {name} | {cpu:.0f} ({rounds}) | {rps:,.0f} | {cpu / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
