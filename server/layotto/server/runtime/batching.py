"""Bulk subscribe: the messages being delivered to one subscription, sent to the app in batches.

Each message still goes through the delivery engine (:mod:`layotto.server.runtime.delivery`) on its
own, so its retries, backoff and dead-letter topic are unchanged; its subscriber's ``offer`` hands it
to a :class:`Batcher`, which collects the offers of one route until ``max_messages`` are waiting or
``max_await_ms`` milliseconds passed since the first, sends them as one batch, and answers each
offer with its entry's outcome (SUCCESS, RETRY or DROP). A batch whose call fails is RETRY for all
its entries. How full batches get depends on how many messages the broker hands out at once (the
pub/sub component's ``concurrency``).

The pub/sub component's inbound resiliency policy applies to a batch as to a single delivery
(:func:`send_under_policy`): a failed call, or entries answered RETRY, are retried (the retries
carrying only the entries not yet settled, as Dapr's), each attempt has the policy's timeout and
passes its circuit breaker, before the delivery engine sees the outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from layotto.server.runtime.delivery import RETRY, Delivery
from layotto.server.runtime.resiliency import Policy, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One message of a batch: ``entry_id`` is unique in the batch (Dapr's ``entryId``)."""

    entry_id: str
    delivery: Delivery


#: sends one batch to ``path``; answers each entry's outcome by entry id (a missing one is RETRY)
SendBatch = Callable[[str, Sequence[Entry]], Awaitable[dict[str, int]]]
#: sends entries of a batch within ``seconds``; answers each entry's outcome by entry id
SendEntries = Callable[[Sequence[Entry], float], Awaitable[dict[str, int]]]


def _retried(_error: Exception) -> Verdict:
    return Verdict.RETRY


async def send_under_policy(
    policy: Policy | None,
    send: SendEntries,
    entries: Sequence[Entry],
    default_timeout: float,
    judge_error: Callable[[Exception], Verdict] = _retried,
) -> dict[str, int]:
    """``send(entries, seconds)`` under a component's inbound ``policy`` (None: once, within
    ``default_timeout`` seconds); each entry's outcome by entry id (a missing one is RETRY).

    An attempt fails when its call raises an error ``judge_error`` calls RETRY (any, by default)
    or when entries are left RETRY (or unanswered): the breaker counts it and the retry sends
    only those entries. Outcomes settled by an attempt are kept when a later one fails; the
    last error is raised only when none were settled (CircuitOpen included)."""
    if policy is None:
        return await send(entries, default_timeout)
    settled: dict[str, int] = {}
    waiting = list(entries)

    async def attempt(seconds: float | None) -> list[Entry]:
        nonlocal waiting
        outcomes = await send(waiting, default_timeout if seconds is None else seconds)
        for entry in waiting:
            outcome = outcomes.get(entry.entry_id, RETRY)
            if outcome != RETRY:
                settled[entry.entry_id] = outcome
        waiting = [entry for entry in waiting if entry.entry_id not in settled]
        return waiting

    def judge_answer(left: list[Entry]) -> Verdict:
        return Verdict.RETRY if left else Verdict.SUCCESS

    try:
        await policy.run(attempt, judge_error=judge_error, judge_answer=judge_answer)
    except Exception as error:
        if not settled:
            raise
        log.warning("bulk delivery of %d events failed after retries: %s", len(waiting), error)
    return settled


@dataclass
class _Pending:
    entries: list[Entry] = field(default_factory=list)
    answers: dict[str, asyncio.Future[int]] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """Collects offers per route path into batches of at most ``max_messages``, sent by ``send``."""

    def __init__(self, send: SendBatch, *, max_messages: int, max_await_ms: int) -> None:
        self._send = send
        self._max_messages = max_messages
        self._max_await = max_await_ms / 1000
        self._pending: dict[str, _Pending] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def offer(self, path: str, delivery: Delivery) -> int:
        """The outcome of ``delivery`` once the batch it joins is answered."""
        entry = Entry(str(uuid.uuid4()), delivery)
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(path, _Pending())
        pending.entries.append(entry)
        pending.answers[entry.entry_id] = answer
        if len(pending.entries) >= self._max_messages:
            self._flush(path)
        elif pending.timer is None:
            pending.timer = asyncio.get_running_loop().call_later(self._max_await, self._flush, path)
        return await answer

    def _flush(self, path: str) -> None:
        pending = self._pending.pop(path, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        task = asyncio.create_task(self._deliver(path, pending))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, path: str, pending: _Pending) -> None:
        try:
            outcomes = await self._send(path, pending.entries)
        except Exception as error:  # the app unreachable or failing: every entry is offered again
            log.warning("bulk delivery of %d events to %s failed: %s", len(pending.entries), path, error)
            outcomes = {}
        for entry_id, answer in pending.answers.items():
            if not answer.done():
                answer.set_result(outcomes.get(entry_id, RETRY))
