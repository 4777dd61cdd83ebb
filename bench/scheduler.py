"""Scheduler firing lag: Dapr jobs due at 1,000 per second, from each job's due time to its arrival
at the app (OnJobEventAlpha1 on a gRPC server in this process), on the sqlite, redis, postgresql and
etcd scheduler components, one `layotto serve` per component, the components alternating round by round.

    scripts/backends up redis postgresql etcd
    python bench/scheduler.py [--rate 1000] [--seconds 2] [--rounds 1] [--stores redis ...]

Each round schedules ``rate * seconds`` one-shot jobs (ScheduleJobAlpha1, 32 at a time) whose
``due_time`` is an RFC 3339 instant with microseconds, spread evenly from a start time a little after
the scheduling ends, so the runtime sees exactly ``rate`` items come due per second; the lag of a
job is its arrival time minus its due time (one machine, one clock); the runtime's CPU (user +
system, from /proc) while the jobs fire, per job, is steadier than the lag on a shared machine.
Prints the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import percentile
from _runtime import free_port, start_runtime, stop, wait_ready
from tracing_overhead import cpu_seconds

from layotto.proto.dapr.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc, dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import jobs_pb2 as jobs

RUN = uuid.uuid4().hex[:8]
STORES: dict[str, dict[str, Any]] = {
    "sqlite": {"type": "sqlite"},
    "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379", "queueName": "bench-scheduler"}},
    "postgresql": {
        "type": "postgresql",
        "metadata": {
            "connectionString": "host=127.0.0.1 port=5432 user=layotto password=layotto dbname=layotto",
            "tableName": "bench_scheduler",
        },
    },
    "etcd": {"type": "etcd", "metadata": {"endpoints": "127.0.0.1:2379", "keyPrefix": f"bench-scheduler-{RUN}/"}},
}
SCHEDULE_CONCURRENCY = 32
LEAD_SECONDS = 1.0  # the first due time after the scheduling ends


class App(appcallback_pb2_grpc.AppCallbackAlphaServicer):
    """Records the arrival time of each job by name."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def OnJobEventAlpha1(self, request: Any, context: Any) -> Any:
        self.arrived.setdefault(request.name, time.time())
        self.changed.set()
        return appcallback_pb2.JobEventResponse()

    async def OnBulkTopicEventAlpha1(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "none")


def rfc3339(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def config(directory: Path, store: str, app_address: str) -> Path:
    body = {"app_id": f"bench-{RUN}-{store}", "app_callback_address": app_address, "scheduler": {store: STORES[store]}}
    path = directory / f"{store}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


async def schedule_all(dapr: Any, names: list[str], dues: list[float]) -> None:
    queue = list(zip(names, dues, strict=True))

    async def worker() -> None:
        while queue:
            name, due = queue.pop()
            request = jobs.ScheduleJobRequest(job=jobs.Job(name=name, due_time=rfc3339(due)), overwrite=True)
            await dapr.ScheduleJobAlpha1(request, timeout=30)

    await asyncio.gather(*(worker() for _ in range(SCHEDULE_CONCURRENCY)))


async def one_round(store: str, rate: int, seconds: float, app: App, app_address: str, folder: Path) -> str:
    process, address = start_runtime(str(folder / store), config(folder, store, app_address))
    try:
        await wait_ready(address)
        async with grpc.aio.insecure_channel(address) as channel:
            dapr = dapr_pb2_grpc.DaprStub(channel)
            count = int(rate * seconds)
            app.arrived.clear()  # one round's jobs only
            names = [f"{store}-{uuid.uuid4().hex[:10]}-{i}" for i in range(count)]
            estimate = count / 800 + 2.0  # generous: scheduling must end before the first due time
            start = time.time() + estimate + LEAD_SECONDS
            dues = [start + i / rate for i in range(count)]
            began = time.time()
            await schedule_all(dapr, names, dues)
            scheduled_in = time.time() - began
            if time.time() > start:
                return f"| {store} | scheduling took {scheduled_in:.1f}s, past the first due time: no result |"
            await asyncio.sleep(max(0.0, start - 0.3 - time.time()))  # the runtime is idle: only firing counts
            cpu_before = cpu_seconds(process.pid)
            deadline = dues[-1] + 30
            while len(app.arrived) < count:
                app.changed.clear()
                try:
                    await asyncio.wait_for(app.changed.wait(), max(0.01, deadline - time.time()))
                except TimeoutError:
                    break
            cpu_ms_per_job = (cpu_seconds(process.pid) - cpu_before) * 1000 / max(1, len(app.arrived))
        lags = sorted(app.arrived[name] - due for name, due in zip(names, dues, strict=True) if name in app.arrived)
        missing = count - len(lags)
        ms = [lag * 1000 for lag in lags]
        return (
            f"| {store} | {rate} | {count} | {percentile(ms, 0.5):.0f} | {percentile(ms, 0.9):.0f} | "
            f"{percentile(ms, 0.99):.0f} | {ms[-1]:.0f} | {missing} | {cpu_ms_per_job:.2f} |"
        )
    finally:
        stop(process)


async def main(args: argparse.Namespace) -> None:
    app = App()
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(app, server)
    app_address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(app_address)
    await server.start()
    print(f"load average before: {os.getloadavg()}", flush=True)
    print("| store | due/s | jobs | lag p50 ms | p90 ms | p99 ms | max ms | not arrived | runtime CPU ms/job |")
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as folder:
            for _ in range(args.rounds):
                for store in args.stores:
                    (Path(folder) / store).mkdir(exist_ok=True)
                    print(await one_round(store, args.rate, args.seconds, app, app_address, Path(folder)), flush=True)
    finally:
        await server.stop(0)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="jobs due per second")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long jobs come due, per round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stores", nargs="+", default=list(STORES), choices=list(STORES))
    asyncio.run(main(parser.parse_args()))
