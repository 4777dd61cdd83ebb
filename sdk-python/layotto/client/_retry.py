"""Retries with exponential backoff, for UNAVAILABLE only."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from layotto.client._errors import translate

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How calls are retried when the runtime is unreachable (gRPC UNAVAILABLE).

    ``attempts`` counts the first try; delays grow from ``initial_backoff`` by
    ``multiplier`` up to ``max_backoff``, each with up to 20% random jitter. Other
    errors are never retried: the runtime answered, and its answer stands.
    """

    attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        delays, delay = [], self.initial_backoff
        for _ in range(self.attempts - 1):
            delays.append(min(delay, self.max_backoff) * (1 + random.uniform(0, 0.2)))
            delay *= self.multiplier
        return delays


NO_RETRY = RetryPolicy(attempts=1)


async def call_with_retry(policy: RetryPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt``, retrying UNAVAILABLE per policy; translate the final error."""
    for delay in [*policy.delays(), None]:
        try:
            return await attempt()
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE or delay is None:
                raise translate(error) from None
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
