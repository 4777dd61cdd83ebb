"""What keeps a broker consumer loop going: where delivery stands, and the loop that repairs.

A :class:`Cursor` follows one subscription's positions in the broker's log (NATS stream
sequences, Redis stream ids), so what the runtime created on the broker can be recreated
from where delivery stopped, never from "now". :func:`keep_consuming` runs a consumer
step forever: any failure is logged and reported (the component is unhealthy meanwhile),
then repaired with backoff, and reported repaired only once a step shows delivery works
again (a step that merely did not fail, such as an idle fetch, shows nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from layotto.server.components.pubsub import PubSub

FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


P = TypeVar("P", bound=_Ordered)


class Cursor(Generic[P]):
    """Where delivery of one subscription stands. ``start``: every position up to it is done."""

    def __init__(self, start: P) -> None:
        self.seen = start  # the highest position handed out (or the start)
        self.open: set[P] = set()  # handed out and not acknowledged by this runtime

    def taken(self, position: P) -> None:
        self.open.add(position)
        self.seen = max(self.seen, position)

    def done(self, position: P) -> None:
        self.open.discard(position)

    def done_up_to(self, position: P) -> None:
        """Everything up to ``position`` is acknowledged (by any consumer of the group)."""
        self.open = {p for p in self.open if position < p}
        self.seen = max(self.seen, position)

    def resume(self) -> tuple[P, bool]:
        """(position, inclusive): resume at the oldest open position, else right after ``seen``."""
        if self.open:
            return min(self.open), True
        return self.seen, False


async def keep_consuming(
    pubsub: PubSub, where: str, step: Callable[[], Awaitable[bool]], repair: Callable[[], Awaitable[None]]
) -> None:
    """Run ``step`` (one fetch and hand-out) forever. When it raises, the failure is logged
    and reported through ``pubsub.fault`` and ``repair`` runs (with backoff, until it
    succeeds); the subscription is reported repaired once a step returns True: it fetched
    messages, or the broker confirmed the subscription (False: nothing shown either way)."""
    backoff = FIRST_BACKOFF_SECONDS
    broken = False
    while True:
        try:
            if broken:
                await repair()
            works = await step()
        except Exception as error:  # any failure: the loop goes on, never silently stops
            broken = True
            pubsub.fault(where, error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        if broken and works:
            broken = False
            backoff = FIRST_BACKOFF_SECONDS
            pubsub.repaired(where)
