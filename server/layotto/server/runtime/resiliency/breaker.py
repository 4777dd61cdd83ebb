"""A circuit breaker with the states and counts of sony/gobreaker, the library Dapr's run on.

Closed: calls pass and failures are counted (the counts cleared every ``interval`` when it is
set); when a failure makes ``consecutiveFailures`` exceed the trip threshold it opens. Open:
every call is refused with :class:`CircuitOpen` for ``timeout`` seconds, then it is half-open.
Half-open: ``maxRequests`` trial calls pass (more are refused); that many successes in a row
close it, one failure opens it again. A call's outcome is counted only in the state
(generation) it started in.

Own code rather than a library: no maintained asyncio breaker keeps gobreaker's semantics
(pybreaker is thread-based and counts differently), and this is one small class.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from layotto.server.errors import CircuitOpen
from layotto.server.runtime.resiliency.spec import BreakerSpec

log = logging.getLogger(__name__)


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """The breaker of one target (``target`` names it in errors: "app 'billing'")."""

    def __init__(self, spec: BreakerSpec, target: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.target = target
        self._clock = clock
        self._state = State.CLOSED
        self._generation = 0
        self._expiry = 0.0  # when the state's period ends (0: never)
        self.requests = 0
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self._new_generation(clock())

    @property
    def state(self) -> State:
        self._refresh(self._clock())
        return self._state

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self.requests = self.consecutive_failures = self.consecutive_successes = 0
        if self._state is State.CLOSED:
            self._expiry = now + self.spec.interval if self.spec.interval > 0 else 0.0
        elif self._state is State.OPEN:
            self._expiry = now + self.spec.timeout
        else:
            self._expiry = 0.0

    def _set_state(self, state: State, now: float) -> None:
        if state is self._state:
            return
        log.info("circuit breaker %r of %s: %s -> %s", self.spec.name, self.target, self._state.value, state.value)
        self._state = state
        self._new_generation(now)

    def _refresh(self, now: float) -> None:
        if self._state is State.CLOSED and self._expiry and self._expiry <= now:
            self._new_generation(now)
        elif self._state is State.OPEN and self._expiry <= now:
            self._set_state(State.HALF_OPEN, now)

    def before(self) -> int:
        """Admit one call and return its generation; raise CircuitOpen when open (or half-open
        with its trial calls under way)."""
        now = self._clock()
        self._refresh(now)
        if self._state is State.OPEN:
            raise CircuitOpen(
                self.target,
                self.spec.name,
                f"open after failures ({self.spec.trip}); calls are refused for {self._expiry - now:.3f} s more",
            )
        if self._state is State.HALF_OPEN and self.requests >= self.spec.max_requests:
            raise CircuitOpen(
                self.target, self.spec.name, f"half-open, its {self.spec.max_requests} trial call(s) under way"
            )
        self.requests += 1
        return self._generation

    def after(self, generation: int, success: bool) -> None:
        """Count the outcome of a call admitted in ``generation`` (ignored if the state moved on)."""
        now = self._clock()
        self._refresh(now)
        if generation != self._generation:
            return
        if success:
            self.consecutive_failures = 0
            self.consecutive_successes += 1
            if self._state is State.HALF_OPEN and self.consecutive_successes >= self.spec.max_requests:
                self._set_state(State.CLOSED, now)
            return
        self.consecutive_successes = 0
        self.consecutive_failures += 1
        if self._state is State.HALF_OPEN or self.consecutive_failures > self.spec.trip_above:
            self._set_state(State.OPEN, now)

    def abandon(self, generation: int) -> None:
        """A call admitted in ``generation`` ended with no outcome (its caller went away): its
        place among the half-open trial calls is free again."""
        if generation == self._generation and self.requests > 0:
            self.requests -= 1
