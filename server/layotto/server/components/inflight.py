"""Per-component in-flight call counting, so a replaced component can drain before it closes.

:func:`track_calls` wraps every public coroutine (and async generator) method of one component
instance with a counter (:class:`CallCounter`). When the component is swapped out of the
:class:`~layotto.server.components.loader.ComponentSet` (live reconfiguration), new calls find
its successor; :func:`drain` waits until the old instance has no call under way and none has
started or ended for :data:`QUIET_SECONDS` (a handler holding the instance between two of its
calls, as a bulk read does, takes far less), or until a time limit passes; then it is closed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

#: how long the old instance must see no call start or end before its drain is over
QUIET_SECONDS = 0.1
_POLL_SECONDS = 0.02
#: lifecycle methods called by the runtime itself, not by requests
_NOT_COUNTED = frozenset({"init", "close", "health", "connect", "supports"})
_ATTRIBUTE = "_layotto_calls"


class CallCounter:
    """How many calls are inside one component instance, and when one last started or ended."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last_activity = time.monotonic()

    def enter(self) -> None:
        self.enter_at(time.monotonic())

    def leave(self) -> None:
        self.leave_at(time.monotonic())

    def enter_at(self, now: float) -> None:
        """A call started at ``now`` (time.monotonic()), read by a caller that times the call too."""
        self.in_flight += 1
        self.last_activity = now

    def leave_at(self, now: float) -> None:
        self.in_flight -= 1
        self.last_activity = now

    def idle(self) -> bool:
        return self.in_flight == 0 and time.monotonic() - self.last_activity >= QUIET_SECONDS


def _counted(method: Callable[..., Awaitable[Any]], counter: CallCounter) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        counter.enter()
        try:
            return await method(*args, **kwargs)
        finally:
            counter.leave()

    call._layotto_counted = (method, counter)  # type: ignore[attr-defined]  # see counted_parts
    return call


def counted_parts(wrapper: Callable[..., Any]) -> tuple[Callable[..., Awaitable[Any]], CallCounter] | None:
    """The method and counter inside a coroutine method's wrapper made by :func:`track_calls`, or None
    for any other callable: a wrapper put over it (the metrics') may count the call itself, with
    :meth:`CallCounter.enter_at` and :meth:`CallCounter.leave_at`, and call the method directly,
    one coroutine less per call."""
    parts: tuple[Callable[..., Awaitable[Any]], CallCounter] | None = getattr(wrapper, "_layotto_counted", None)
    return parts


def _counted_stream(method: Callable[..., AsyncIterator[Any]], counter: CallCounter) -> Callable[..., Any]:
    @functools.wraps(method)
    async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        counter.enter()
        try:
            async for item in method(*args, **kwargs):
                yield item
        finally:
            counter.leave()

    return stream


def track_calls(component: object) -> CallCounter:
    """Count the calls into ``component``'s public async methods (wrapping them on the instance,
    over any wrapper already there, e.g. a resiliency policy); idempotent. Returns its counter."""
    counter: CallCounter | None = getattr(component, _ATTRIBUTE, None)
    if counter is not None:
        return counter
    counter = CallCounter()
    for name in dir(type(component)):
        if name.startswith("_") or name in _NOT_COUNTED:
            continue
        method = getattr(component, name, None)
        if inspect.isasyncgenfunction(method):
            setattr(component, name, _counted_stream(method, counter))
        elif inspect.iscoroutinefunction(method):
            setattr(component, name, _counted(method, counter))
    setattr(component, _ATTRIBUTE, counter)
    return counter


async def drain(component: object, limit_seconds: float) -> bool:
    """Wait until no call is inside ``component`` (see the module); False when ``limit_seconds``
    passed first (calls still under way). An untracked component is drained at once."""
    counter: CallCounter | None = getattr(component, _ATTRIBUTE, None)
    if counter is None:
        return True
    deadline = time.monotonic() + limit_seconds
    while not counter.idle():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True
