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
