"""Floors: the cheapest Python sidecar one could write for a call, beside this runtime, same run.

Whether a target is reachable in Python at all: each case runs the runtime and a minimal
sidecar with no runtime logic (bench/floor_servers.py: pygrpc-native server, methods registered
one by one, no interceptors, no validation, no tracing or metrics) in alternating rounds, under
the same load generator (this process, grpc.aio). The primary figure is each sidecar's CPU per
call: utime + stime of its whole process from /proc/PID/stat over the measured window, divided
by the calls answered; p50/p90 beside it.

* ``invocation``: app -> sidecar A -> sidecar B -> app (the SDK's ``SubscriberApp`` answering a
  1 KiB echo through ``AppCallback/OnInvoke``), at a fixed rate and at concurrency 16. Rows:
  ``direct`` (the caller calls the app), ``runtime`` (two ``layotto serve --grpc-transport native``,
  static name resolution), ``floor grpc.aio`` (two minimal forwarders whose outgoing calls are
  grpc.aio's client), and, when pyqwest is importable, ``floor pyqwest hop`` (A's call to B is a
  POST over pyqwest's Rust HTTP/2 client, B's to the app grpc.aio) and ``floor pyqwest`` (both).
* ``state``: Dapr's ``GetState`` / ``SaveState`` on Redis at concurrency 16 and at the fixed rate:
  the runtime (native) against a minimal server answering from Redis (redis-py asyncio +
  hiredis, one command per call), and daprd with ``--daprd PATH`` (or ``$DAPRD``; how to build
  it: bench/daprd_compare.py).

* ``files``: Layotto's ``GetFile`` / ``PutFile`` of a ``--mib`` MiB object on moto's S3 server:
  aiobotocore directly, the runtime on each transport, and a minimal relay on each (aiobotocore
  behind ``Runtime/GetFile`` and ``Runtime/PutFile`` only); MiB/s, the ratio to direct, the CPU per
  MiB of the relay, of moto and of this process, and the bound that CPU sets on 2 cores
  (bench/floor_files.py says how).

    python bench/floors.py [--case invocation|state|files|all] [--rounds 3] [--seconds 0.7] [--rate 500]
        [--daprd PATH] [--mib 32]

pyqwest is not a dependency of the project: ``pip install pyqwest`` adds its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _runtime import free_port, start, start_runtime, stop
from daprd_compare import start_daprd
from invocation import CALLEE_APP, PAYLOAD, Cell, Row, measure

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc, dapr_pb2_grpc, state_pb2
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

HERE = Path(__file__).parent
REDIS = "127.0.0.1:6379"
LOADS = ("rate", "c16")
HAS_PYQWEST = importlib.util.find_spec("pyqwest") is not None
FILE_ROUNDS = 8


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            stop(process)


def floor_server(started: list[subprocess.Popen[bytes]], *args: str) -> tuple[int, str]:
    """A bench/floor_servers.py process (its errors on this process's stderr): pid, address."""
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen([sys.executable, str(HERE / "floor_servers.py"), args[0], address, *args[1:]])
    started.append(process)
    return process.pid, address


async def invocation_rows(tmp: Path, started: list[subprocess.Popen[bytes]]) -> list[tuple[Row, str]]:
    """(row, the address its calls go to) for each invocation path."""
    app_address = f"127.0.0.1:{free_port()}"
    app = start([sys.executable, "-c", CALLEE_APP, app_address])
    started.append(app)
    await ready(app_address, "app")
    (tmp / "b.yaml").write_text(yaml.safe_dump({"app_id": "b", "app_callback_address": app_address}))
    b, b_address = start_runtime(str(tmp / "b"), tmp / "b.yaml", ["--grpc-transport", "native"])
    started.append(b)
    await ready(b_address, "sidecar B")
    a_config = {"app_id": "a", "name_resolution": {"type": "static", "apps": {"b": [b_address]}}}
    (tmp / "a.yaml").write_text(yaml.safe_dump(a_config))
    a, a_address = start_runtime(str(tmp / "a"), tmp / "a.yaml", ["--grpc-transport", "native"])
    started.append(a)
    paths = [("runtime", a.pid, b.pid, a_address)]
    variants = [("floor grpc.aio", "grpcaio", "grpcaio"), ("floor grpc future", "grpcfuture", "grpcfuture")]
    if HAS_PYQWEST:
        variants += [("floor pyqwest hop", "pyqwest", "grpcaio"), ("floor pyqwest", "pyqwest", "pyqwest")]
    await ready(a_address, "sidecar A")
    for name, hop_client, app_client in variants:  # one after the other: on a busy machine ten starting
        fb_pid, fb_address = floor_server(started, "forward-b", app_address, app_client)  # processes at once
        fa_pid, fa_address = floor_server(started, "forward-a", fb_address, hop_client)  # take minutes
        await ready(fa_address, name)
        paths.append((name, fa_pid, fb_pid, fa_address))
    rows = [(Row("direct", lambda: None, {"app": app.pid}), app_address)]  # calls bound in run_invocation
    for name, a_pid, b_pid, address in paths:
        rows.append((Row(name, lambda: None, {"A": a_pid, "B": b_pid, "app": app.pid}), address))
    return rows


async def ready(address: str, name: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait for the server at ``address`` (up to 3 minutes: start-up on a loaded machine is slow);
    exits at once if its ``process`` does."""
    async with grpc.aio.insecure_channel(address) as channel:
        for _ in range(180):
            try:
                await asyncio.wait_for(channel.channel_ready(), 1)
                return
            except TimeoutError:
                if process is not None and process.poll() is not None:
                    raise SystemExit(f"{name} exited with {process.returncode} before it served") from None
    raise SystemExit(f"{name} at {address} did not start within 3 minutes")


async def run_invocation(rounds: int, seconds: float, rate: float) -> dict[tuple[str, str], Cell]:
    direct = common_pb2.InvokeRequest(method="echo", content_type="application/octet-stream")
    direct.data.value = PAYLOAD
    via = pb.InvokeServiceRequest(id="b")
    via.message.method, via.message.content_type = "echo", "application/octet-stream"
    via.message.data.value = PAYLOAD
    with tempfile.TemporaryDirectory() as tmp, processes() as started:
        placed = await invocation_rows(Path(tmp), started)
        channels = [grpc.aio.insecure_channel(address) for _, address in placed]
        rows = []
        for (row, _), channel in zip(placed, channels, strict=True):
            if row.name == "direct":
                on_invoke = appcallback_pb2_grpc.AppCallbackStub(channel).OnInvoke
                rows.append(Row(row.name, lambda f=on_invoke: f(direct), row.pids))  # type: ignore[misc]
            else:
                invoke = runtime_pb2_grpc.RuntimeStub(channel).InvokeService
                assert (await invoke(via)).data.value == PAYLOAD, row.name  # the echo makes the whole trip
                rows.append(Row(row.name, lambda f=invoke: f(via), row.pids))  # type: ignore[misc]
        try:
            return await alternate(rows, rounds, seconds, rate)
        finally:
            for channel in channels:
                await channel.close()


async def run_state(rounds: int, seconds: float, rate: float, daprd: str = "") -> dict[tuple[str, str], Cell]:
    config = {"state": {"redis": {"type": "redis", "metadata": {"redisHost": REDIS}}}}
    item = common_pb2.StateItem(key="floors-bench", value=b"v" * 100)
    save = state_pb2.SaveStateRequest(store_name="redis", states=[item])
    get = state_pb2.GetStateRequest(store_name="redis", key="floors-bench")
    with tempfile.TemporaryDirectory() as tmp, processes() as started:
        (Path(tmp) / "layotto.yaml").write_text(yaml.safe_dump(config))
        ours, ours_address = start_runtime(tmp, Path(tmp) / "layotto.yaml", ["--grpc-transport", "native"])
        started.append(ours)
        floor_pid, floor_address = floor_server(started, "state", REDIS)
        servers = [("runtime", ours.pid, ours_address), ("floor", floor_pid, floor_address)]
        if daprd:
            (Path(tmp) / "daprd").mkdir()
            dapr, dapr_address = start_daprd(daprd, Path(tmp) / "daprd")
            started.append(dapr)
            await ready(dapr_address, "daprd", dapr)
            servers.append(("daprd", dapr.pid, dapr_address))
        channels = []
        rows = []
        for name, pid, address in servers:
            await ready(address, name)
            channel = grpc.aio.insecure_channel(address)
            channels.append(channel)
            stub = dapr_pb2_grpc.DaprStub(channel)
            await stub.SaveState(save)
            assert (await stub.GetState(get)).data == item.value, name
            rows.append(Row(f"GetState, {name}", lambda s=stub: s.GetState(get), {"sidecar": pid}))  # type: ignore[misc]
            rows.append(Row(f"SaveState, {name}", lambda s=stub: s.SaveState(save), {"sidecar": pid}))  # type: ignore[misc]
        try:
            return await alternate(rows, rounds, seconds, rate)
        finally:
            for channel in channels:
                await channel.close()


async def alternate(rows: list[Row], rounds: int, seconds: float, rate: float) -> dict[tuple[str, str], Cell]:
    cells = {(row.name, load): Cell() for row in rows for load in LOADS}
    for _ in range(rounds):
        for load in LOADS:
            for row in rows:
                await measure(row, load, seconds, rate, cells[row.name, load])
    return cells


def invocation_table(cells: dict[tuple[str, str], Cell], rate: float) -> list[str]:
    names = list(dict.fromkeys(name for name, _ in cells))
    direct = cells["direct", "rate"].percentiles()
    lines = [
        f"| path | CPU µs per call at {rate:.0f} req/s: A / B / app | same at c16 | p50 / p90 ms at {rate:.0f} req/s "
        "| added p50 / p90 ms | req/s at c16 |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        at_rate, c16 = cells[name, "rate"], cells[name, "c16"]
        cpu = [
            " / ".join(f"{c.cpu_us(p):.0f}" if p in c.cpu else "—" for p in ("A", "B", "app")) for c in (at_rate, c16)
        ]
        p50, p90, _ = at_rate.percentiles()
        added = "" if name == "direct" else f"{p50 - direct[0]:+.2f} / {p90 - direct[1]:+.2f}"
        lines.append(
            f"| {name} | {cpu[0]} | {cpu[1]} | {p50:.2f} / {p90:.2f} | {added} | {c16.requests / c16.seconds:,.0f} |"
        )
    return lines


def state_table(cells: dict[tuple[str, str], Cell], rate: float) -> list[str]:
    lines = [
        f"| call | sidecar CPU µs per call at c16 | ÷ daprd | at {rate:.0f} req/s | p50 / p90 ms at {rate:.0f} req/s "
        "| req/s at c16 |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(name for name, _ in cells):
        at_rate, c16 = cells[name, "rate"], cells[name, "c16"]
        p50, p90, _ = at_rate.percentiles()
        daprd = cells.get((name.split(",")[0] + ", daprd", "c16"))
        ratio = f"{c16.cpu_us('sidecar') / daprd.cpu_us('sidecar'):.2f}x" if daprd is not None else "—"
        lines.append(
            f"| {name} | {c16.cpu_us('sidecar'):.0f} | {ratio} | {at_rate.cpu_us('sidecar'):.0f} | "
            f"{p50:.2f} / {p90:.2f} | {c16.requests / c16.seconds:,.0f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="all", choices=("invocation", "state", "files", "all"))
    parser.add_argument("--rounds", type=int, help=f"alternating rounds (default 3; {FILE_ROUNDS} for files)")
    parser.add_argument("--seconds", type=float, default=0.7, help="measured seconds per row, round and load")
    parser.add_argument("--rate", type=float, default=500.0, help="the fixed rate, in requests per second")
    parser.add_argument(
        "--daprd", default=os.environ.get("DAPRD", ""), help="a daprd binary: its rows in the state case"
    )
    parser.add_argument("--mib", type=int, default=32, help="MiB per transfer in the files case")
    args = parser.parse_args()
    if args.daprd and not Path(args.daprd).is_file():
        parser.error(f"--daprd: no file {args.daprd}")
    per_call = (
        ""
        if args.case == "files"
        else f"; {args.rounds or 3} alternating rounds of {args.seconds:g} s per row and load"
    )
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.platform()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, grpcio {grpc.__version__}{per_call}"
    )
    for case, run, table in (
        ("invocation", run_invocation, invocation_table),
        ("state", functools.partial(run_state, daprd=args.daprd), state_table),
    ):
        if args.case not in (case, "all"):
            continue
        load = os.getloadavg()[0]
        cells = asyncio.run(run(args.rounds or 3, args.seconds, args.rate))
        print(f"\n{case}: load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        print("\n".join(table(cells, args.rate)))
    if args.case in ("files", "all"):
        from floor_files import files_case  # it imports this module's helpers

        print("\n" + "\n".join(files_case(args.rounds or FILE_ROUNDS, args.mib)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
