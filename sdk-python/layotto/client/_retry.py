"""Retries with exponential backoff, for a runtime that is unreachable or restarting.

What is retried, within the call's deadline and the policy's attempts:

* ``UNAVAILABLE`` with reason ``RUNTIME_SHUTTING_DOWN`` (the runtime did not start the call),
  and a connection that could not be made: every call, since none reached the runtime;
* any other ``UNAVAILABLE`` without a reason (the connection broke, perhaps mid-call): idempotent
  calls only (reads, plain saves and deletes, keep-alives, ...);
* never ``BACKEND_UNAVAILABLE``: the runtime is up and has retried its backend; the app decides;
* never an INTERNAL failure of gRPC's client core (``LayottoError.transport_failure``): whether the
  call reached the runtime is unknown, so only streams being opened retry it (``_stream``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from layotto.client._errors import reason_of, translate

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How calls are retried when the runtime is unreachable or restarting.

    ``attempts`` counts the first try; delays grow from ``initial_backoff`` by ``multiplier``
    up to ``max_backoff`` (seconds), each with up to 20% random jitter, and stop at the call's
    deadline. Other errors are never retried: the runtime answered, and its answer stands.
    """

    attempts: int = 20
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        """The pauses between attempts, in seconds (``attempts`` - 1 of them)."""
        return list(self.backoffs())

    def backoffs(self) -> Iterator[float]:
        """:meth:`delays`, drawn one at a time (a call that succeeds first time draws none)."""
        delay = self.initial_backoff
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_backoff) * (1 + random.uniform(0, 0.2))
            delay *= self.multiplier


NO_RETRY = RetryPolicy(attempts=1)


def never_reached_the_runtime(error: grpc.aio.AioRpcError) -> bool:
    """The call was not started by the runtime: it is shutting down, or no connection was made."""
    reason = reason_of(error)
    if reason == "RUNTIME_SHUTTING_DOWN":
        return True
    details = (error.details() or "").lower()  # a runtime's own reason means it was reached (APP_UNAVAILABLE)
    return error.code() is grpc.StatusCode.UNAVAILABLE and not reason and "failed to connect" in details


def retryable(error: grpc.aio.AioRpcError, idempotent: bool) -> bool:
    if never_reached_the_runtime(error):
        return True
    return idempotent and error.code() is grpc.StatusCode.UNAVAILABLE and reason_of(error) == ""


async def call_with_retry(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    idempotent: bool = False,
    ends_at: float | None = None,
) -> T:
    """Run ``attempt``, retrying per policy until ``ends_at`` (loop time); translate the final error."""
    try:
        return await attempt()
    except grpc.aio.AioRpcError as error:
        first_error = error
    return await retry_after(first_error, policy, attempt, idempotent=idempotent, ends_at=ends_at)


async def retry_after(
    error: grpc.aio.AioRpcError,
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    idempotent: bool = False,
    ends_at: float | None = None,
) -> T:
    """The rest of :func:`call_with_retry` once the first attempt failed with ``error``: the
    retry machinery costs nothing on a call that succeeds."""
    loop = asyncio.get_running_loop()
    delays = policy.backoffs()
    while True:
        delay = next(delays, None)
        out_of_time = ends_at is not None and delay is not None and loop.time() + delay >= ends_at
        if delay is None or out_of_time or not retryable(error, idempotent):
            raise translate(error) from None
        await asyncio.sleep(delay)
        try:
            return await attempt()
        except grpc.aio.AioRpcError as next_error:
            error = next_error
