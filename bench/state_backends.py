"""GetState and SaveState on Redis and PostgreSQL: the runtime against the same operation
done directly with the same async driver, and against the floor for any Python sidecar
(bench/minimal_sidecar.py), all measured in the same run.

    scripts/backends up redis postgres
    python bench/state_backends.py [--seconds 5] [--rate 500] [--rounds 3]

Rows at the highest concurrency are measured in ``--rounds`` alternating rounds (sidecar,
runtime, sidecar, runtime, ...), so a machine whose speed drifts during the run moves both;
the summary reads the median of the per-round ratios. The fixed-rate rows include the
minimal sidecar, whose added p90 is the floor under the runtime's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _load import LoadResult, closed_loop, fixed_rate
from _runtime import free_port, start_runtime, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

HERE = Path(__file__).parent
PG_DSN = "host=127.0.0.1 port=5432 user=layotto password=layotto dbname=layotto"
VALUE = b"v" * 100
Call = Callable[[], Awaitable[object]]


async def direct_calls(backend: str) -> tuple[Call, Call, Callable[[], Awaitable[None]]]:
    """(get, save, close) doing the operation straight through the driver."""
    if backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool(max_connections=32))
        await client.hset("bench:direct", "data", VALUE)
        return (
            lambda: client.hget("bench:direct", "data"),
            lambda: client.hset("bench:direct", "data", VALUE),
            client.aclose,
        )
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(PG_DSN, min_size=4, max_size=16, kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True)

    async def get() -> object:
        async with pool.connection() as conn:
            return await (await conn.execute("SELECT value FROM bench_direct WHERE key = %s", ("k",))).fetchone()

    async def save() -> object:
        async with pool.connection() as conn:
            return await conn.execute(
                "INSERT INTO bench_direct (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                "DO UPDATE SET value = EXCLUDED.value",
                ("k", VALUE),
            )

    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_direct (key TEXT PRIMARY KEY, value BYTEA)")
    await save()
    return get, save, pool.close


def grpc_calls(channel: grpc.aio.Channel, store: str, key: str) -> tuple[Call, Call]:
    stub = runtime_pb2_grpc.RuntimeStub(channel)
    get_request = pb.GetStateRequest(store_name=store, key=key)
    save_request = pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key=key, value=VALUE)])
    return (lambda: stub.GetState(get_request)), (lambda: stub.SaveState(save_request))


def runtime_config(directory: Path) -> Path:
    namespace = uuid.uuid4().hex[:8]
    config = {
        "state": {
            "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379", "keyPrefix": f"bench-{namespace}:"}},
            "postgresql": {"type": "postgresql", "metadata": {"connectionString": PG_DSN, "tableName": "bench_state"}},
        }
    }
    path = directory / "bench-runtime.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def run(seconds: float, rate: float, concurrencies: list[int], rounds: int) -> list[LoadResult]:
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        runtime, runtime_address = start_runtime(tmp, runtime_config(Path(tmp)))
        try:
            await wait_ready(runtime_address)
            for backend in ("redis", "postgresql"):
                sidecar_address = f"127.0.0.1:{free_port()}"
                sidecar = subprocess.Popen([sys.executable, str(HERE / "minimal_sidecar.py"), sidecar_address, backend])
                try:
                    await wait_ready(sidecar_address)
                    results += await measure_backend(
                        backend, runtime_address, sidecar_address, Plan(seconds, rate, concurrencies, rounds)
                    )
                finally:
                    sidecar.send_signal(signal.SIGTERM)
                    sidecar.wait(timeout=20)
        finally:
            runtime.send_signal(signal.SIGTERM)
            runtime.wait(timeout=20)
    return results


@dataclass(frozen=True)
class Plan:
    seconds: float
    rate: float
    concurrencies: list[int]
    rounds: int


async def measure_backend(backend: str, runtime_address: str, sidecar_address: str, plan: Plan) -> list[LoadResult]:
    results = []
    direct_get, direct_save, close = await direct_calls(backend)
    async with grpc.aio.insecure_channel(runtime_address) as rt, grpc.aio.insecure_channel(sidecar_address) as sc:
        runtime_get, runtime_save = grpc_calls(rt, backend, "bench")
        sidecar_get, sidecar_save = grpc_calls(sc, "", "k" if backend == "postgresql" else "bench:direct")
        await runtime_save()
        await sidecar_save()
        for op, calls in (
            ("GetState", (direct_get, sidecar_get, runtime_get)),
            ("SaveState", (direct_save, sidecar_save, runtime_save)),
        ):
            names = (f"{backend} {op}: driver directly", f"{backend} {op}: minimal sidecar", f"{backend} {op}: runtime")
            for concurrency in plan.concurrencies:
                repeat = plan.rounds if concurrency == max(plan.concurrencies) else 1
                for _ in range(repeat):
                    for name, call in zip(names, calls, strict=True):
                        results.append(await closed_loop(name, call, concurrency, plan.seconds))
            for name, call in zip(names, calls, strict=True):
                results.append(await fixed_rate(name, call, plan.rate, plan.seconds))
    await close()
    return results


def summary(results: list[LoadResult], rate: float, concurrency: int) -> list[str]:
    lines = []
    for backend in ("redis", "postgresql"):
        for op in ("GetState", "SaveState"):
            rows = [r for r in results if r.name.startswith(f"{backend} {op}")]
            fixed = {r.name.rsplit(": ", 1)[1]: r for r in rows if r.concurrency == 0}
            direct = fixed["driver directly"].p90_ms
            runtime = [r.rps for r in rows if r.concurrency == concurrency and r.name.endswith("runtime")]
            sidecar = [r.rps for r in rows if r.concurrency == concurrency and r.name.endswith("sidecar")]
            ratios = sorted(a / b for a, b in zip(runtime, sidecar, strict=True))
            lines.append(
                f"{backend} {op}: added p90 at {rate:.0f} req/s = {fixed['runtime'].p90_ms - direct:.3f} ms "
                f"(minimal sidecar: {fixed['minimal sidecar'].p90_ms - direct:.3f} ms); at concurrency {concurrency} "
                f"the runtime reaches {statistics.median(ratios):.0%} of the minimal sidecar's req/s "
                f"(median of {len(ratios)} rounds: {', '.join(f'{r:.0%}' for r in ratios)})"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds at the highest concurrency")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    results = asyncio.run(run(args.seconds, args.rate, args.concurrency, args.rounds))
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, {args.seconds:.0f} s per row"
    )
    print("| what | concurrency (0: fixed rate) | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    for line in summary(results, args.rate, max(args.concurrency)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
