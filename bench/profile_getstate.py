"""Where the runtime's CPU goes on a GetState: py-spy over `layotto serve` under closed-loop load.

Starts the runtime (``--grpc-transport native`` unless told otherwise) with the in-memory and
Redis state stores, drives GetState at ``--concurrency`` from this process, and records the
runtime with ``py-spy record --native --format raw`` (every thread, Python and native frames).
Prints the frames holding most samples: by self time (the leaf of each stack) and inclusive
(anywhere in a stack). Needs py-spy (``pip install py-spy``) and leave to ptrace a child.

    python bench/profile_getstate.py [--store in-memory|redis] [--transport native] [--seconds 10] [--tracing]

``--tracing``: the runtime traces every call (sampling 1.0, OTLP to a collector in another process
that accepts exports without decoding them, as in ``tracing_overhead.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import closed_loop
from _runtime import start_runtime, stop, wait_ready
from tracing_overhead import COLLECTOR
from transport import runtime_config

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc


def python_function(frame: str) -> str | None:
    """``func (path/file.py)`` of a Python frame ``func (path/file.py:LINE)``; None for a native frame."""
    name, _, where = frame.rpartition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    return f"{name} ({path})" if path.endswith(".py") and line.isdigit() else None


Tally = list[tuple[str, int]]


def top_frames(raw: Path, count: int) -> tuple[Tally, Tally, Tally, int]:
    """From py-spy's raw output (``thread;frame;...;leaf N`` per line): the leaf frames, the innermost
    Python function of each stack (self time of Python code and the native code it called), and the
    Python functions anywhere in a stack (inclusive), each with its samples; and the total."""
    leaf: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        n = int(samples)
        frames = stack.split(";")[1:]  # the first names the thread
        functions = [f for f in map(python_function, frames) if f is not None]
        total += n
        leaf[frames[-1] if frames else "?"] += n
        own[functions[-1] if functions else "(native thread)"] += n
        for function in set(functions):
            inclusive[function] += n
    return leaf.most_common(count), own.most_common(count), inclusive.most_common(count), total


async def load(address: str, store: str, concurrency: int, seconds: float) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        item = pb.StateItem(key="bench", value=b"v" * 100)
        await stub.SaveState(pb.SaveStateRequest(store_name=store, states=[item]))
        request = pb.GetStateRequest(store_name=store, key="bench")
        result = await closed_loop("GetState", lambda: stub.GetState(request), concurrency, seconds, warmup=0)
        return result.rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="in-memory")
    parser.add_argument("--transport", default="native")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", type=Path, help="keep py-spy's raw output here")
    parser.add_argument("--tracing", action="store_true", help="trace every call (OTLP to a local collector)")
    args = parser.parse_args()
    collector = None
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.output or Path(tmp) / "profile.txt"
        config = runtime_config(Path(tmp))
        if args.tracing:
            collector = subprocess.Popen([sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True)
            assert collector.stdout is not None
            body = yaml.safe_load(config.read_text())
            otlp = f"http://127.0.0.1:{collector.stdout.readline().strip()}"
            body["tracing"] = {"exporters": ["otlp"], "otlp_endpoint": otlp, "sampling_ratio": 1.0}
            config.write_text(yaml.safe_dump(body))
        runtime, address = start_runtime(tmp, config, ["--grpc-transport", args.transport])
        try:
            asyncio.run(wait_ready(address))
            command = [
                str(Path(sys.executable).with_name("py-spy"))
                if Path(sys.executable).with_name("py-spy").exists()
                else "py-spy",
                "record",
                "--native",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
            ]
            command += ["--duration", str(int(args.seconds)), "--output", str(raw), "--pid", str(runtime.pid)]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            rps = asyncio.run(load(address, args.store, args.concurrency, args.seconds + 1))
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0:
                print(err.decode(), file=sys.stderr)
                return 1
        finally:
            stop(runtime)
            if collector is not None:
                collector.kill()
        leaf, own, inclusive, total = top_frames(raw, args.top)
    print(
        f"{args.store} GetState on {args.transport}, concurrency {args.concurrency}: {rps:,.0f} req/s, {total} samples"
    )
    tables = (("leaf frame", leaf), ("innermost Python function", own), ("Python function, inclusive", inclusive))
    for title, frames in tables:
        print(f"\n| % of samples | {title} |\n|---|---|")
        for frame, n in frames:
            print(f"| {n / total:.1%} | `{frame}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
