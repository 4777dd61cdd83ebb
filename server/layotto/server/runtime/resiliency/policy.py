"""Running a call under a target's policies, in Dapr's order: retry( breaker( timeout( call ) ) ).

Each attempt has the target's timeout (bounded by the caller's remaining deadline), passes its
circuit breaker (an open breaker refuses with CircuitOpen, which is never retried), and a
failed attempt is retried after the retry policy's wait, as long as retries are left and the
wait ends before the caller's deadline. What a failure is, and whether it is retried, the
caller says with a *judge* (:class:`Verdict`) per error and per answer.

The backoff is own code (a dozen lines): Dapr's constant and exponential (500 ms x1.5,
randomised +-50 %, capped at maxInterval) waits, which no library's presets reproduce, bounded
by the caller's deadline.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from layotto.server.errors import CircuitOpen, DeadlineExceeded, LayottoError
from layotto.server.runtime.resiliency.breaker import CircuitBreaker
from layotto.server.runtime.resiliency.spec import RetrySpec, TargetSpec

T = TypeVar("T")
FIRST_EXPONENTIAL_WAIT = 0.5  # seconds, as Dapr's (cenkalti/backoff's initial interval)
EXPONENTIAL_FACTOR = 1.5


class Verdict(enum.Enum):
    """How an attempt's outcome counts."""

    SUCCESS = "success"  # the target did its part (a breaker counts a success); returned or raised as is
    RETRY = "retry"  # a failure: counted by the breaker, retried while the policy allows
    FINAL = "final"  # a failure: counted by the breaker, returned or raised at once


def waits(retry: RetrySpec | None, rand: Callable[[], float] = random.random) -> Iterator[float]:
    """The seconds to wait before each retry; as many as ``maxRetries`` (-1: without end)."""
    if retry is None:
        return
    attempts = itertools.count() if retry.max_retries < 0 else range(retry.max_retries)
    interval = FIRST_EXPONENTIAL_WAIT
    for _ in attempts:
        if retry.policy == "constant":
            yield retry.duration
            continue
        yield min(retry.max_interval, interval * (0.5 + rand()))
        interval = min(interval * EXPONENTIAL_FACTOR, retry.max_interval)


def matches(retry: RetrySpec | None, code: int, *, http: bool) -> bool:
    """Whether an app's answer with status ``code`` (HTTP, or a gRPC code number) is retried:
    Dapr's ``matching`` lists; none listed means every error answer."""
    if retry is None:
        return False
    ranges = retry.http_codes if http else retry.grpc_codes
    return not ranges or any(low <= code <= high for low, high in ranges)


class Policy:
    """The policies of one target, with its breaker's state (one per target)."""

    def __init__(self, target: str, spec: TargetSpec) -> None:
        """``target`` names it in errors and logs ("app 'billing'", "component 'statestore'")."""
        self.target = target
        self.spec = spec
        self.breaker = CircuitBreaker(spec.breaker, target) if spec.breaker is not None else None

    async def run(
        self,
        attempt: Callable[[float | None], Awaitable[T]],
        *,
        judge_error: Callable[[Exception], Verdict],
        judge_answer: Callable[[T], Verdict] = lambda _: Verdict.SUCCESS,
        timeout: float | None = None,
    ) -> T:
        """The answer of ``attempt(seconds left or None)``, retried per the policy, within
        ``timeout`` seconds (the caller's deadline; None: none). Raises CircuitOpen when the
        breaker refuses, DeadlineExceeded when the timeout policy or the deadline cuts an
        attempt or the retries (naming the last failure), else the last attempt's error (or
        failed answer) once no retry is left."""
        loop = asyncio.get_running_loop()
        ends_at = None if timeout is None else loop.time() + timeout
        pauses = waits(self.spec.retry)
        while True:
            remaining = None if ends_at is None else ends_at - loop.time()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(self.target)
            error: Exception | None = None
            try:
                answer = await self._attempt(attempt, remaining, judge_error, judge_answer)
            except CircuitOpen:
                raise
            except Exception as failure:
                if judge_error(failure) is not Verdict.RETRY:
                    raise
                error = failure
            else:
                if judge_answer(answer) is not Verdict.RETRY:
                    return answer
            pause = next(pauses, None)
            if pause is None:
                if error is not None:
                    raise error
                return answer
            if ends_at is not None and loop.time() + pause >= ends_at:  # retries are left, time is not
                last = error.message if isinstance(error, LayottoError) else repr(error or answer)
                raise DeadlineExceeded(f"{self.target} (retried until the caller's deadline; last failure: {last})")
            await asyncio.sleep(pause)

    async def _attempt(
        self,
        attempt: Callable[[float | None], Awaitable[T]],
        remaining: float | None,
        judge_error: Callable[[Exception], Verdict],
        judge_answer: Callable[[T], Verdict],
    ) -> T:
        breaker = self.breaker
        generation = breaker.before() if breaker is not None else 0
        try:
            answer = await self._timed(attempt, remaining)
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.abandon(generation)
            raise
        except Exception as error:
            if breaker is not None:
                breaker.after(generation, judge_error(error) is Verdict.SUCCESS)
            raise
        if breaker is not None:
            breaker.after(generation, judge_answer(answer) is Verdict.SUCCESS)
        return answer

    async def _timed(self, attempt: Callable[[float | None], Awaitable[T]], remaining: float | None) -> T:
        """One attempt, cut by the timeout policy when it ends before the caller's deadline."""
        limit = self.spec.timeout
        if limit is None or (remaining is not None and remaining <= limit):
            return await attempt(remaining)
        try:
            async with asyncio.timeout(limit):
                return await attempt(limit)
        except TimeoutError:
            what = f"{self.target} (its resiliency timeout {self.spec.timeout_name!r}: {limit:g} s)"
            raise DeadlineExceeded(what) from None
