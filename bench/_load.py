"""Closed-loop load generation over gRPC, shared by the benchmarks."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    name: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def row(self) -> str:
        return (
            f"| {self.name} | {self.concurrency} | {self.rps:,.0f} | {self.p50_ms:.3f} | "
            f"{self.p90_ms:.3f} | {self.p99_ms:.3f} |"
        )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def closed_loop(
    name: str, call: Callable[[], Awaitable[object]], concurrency: int, seconds: float, warmup: float = 1.0
) -> LoadResult:
    """``concurrency`` workers call back to back; latencies of the measured window only."""
    latencies: list[float] = []
    measuring = False
    stop_at = time.monotonic() + warmup + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            await call()
            if measuring:
                latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    window_start = time.monotonic()
    await asyncio.gather(*tasks)
    window = time.monotonic() - window_start
    latencies.sort()
    ms = [v * 1000 for v in latencies]
    return LoadResult(
        name, concurrency, len(latencies), window, percentile(ms, 0.5), percentile(ms, 0.9), percentile(ms, 0.99)
    )


__all__ = ["LoadResult", "closed_loop", "percentile", "statistics"]


async def fixed_rate(
    name: str, call: Callable[[], Awaitable[object]], rate: float, seconds: float, warmup: float = 1.0
) -> LoadResult:
    """Open loop: start one call every 1/rate seconds regardless of completions."""
    latencies: list[float] = []
    interval = 1.0 / rate
    pending: set[asyncio.Task[None]] = set()

    async def one(record: bool) -> None:
        started = time.perf_counter()
        await call()
        if record:
            latencies.append(time.perf_counter() - started)

    begin = time.perf_counter()
    total = int((warmup + seconds) * rate)
    for i in range(total):
        target = begin + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(record=i >= warmup * rate))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    latencies.sort()
    ms = [v * 1000 for v in latencies]
    return LoadResult(name, 0, len(latencies), seconds, percentile(ms, 0.5), percentile(ms, 0.9), percentile(ms, 0.99))
