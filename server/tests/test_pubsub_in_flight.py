"""Closing a broker subscription lets a handler that is acknowledging a message finish."""

from __future__ import annotations

import asyncio

from layotto.server.components.pubsub import InFlight


async def test_closing_lets_a_handler_finish_its_ack() -> None:
    in_flight = InFlight(2)
    acked: list[str] = []

    async def handler() -> None:
        await asyncio.sleep(0.05)  # the subscriber answered; the ack is on its way to the broker
        acked.append("m1")

    await in_flight.start(handler())
    await asyncio.sleep(0)
    await in_flight.cancel()
    assert acked == ["m1"], "an ack already decided reaches the broker"


async def test_closing_cancels_a_handler_that_does_not_finish() -> None:
    in_flight = InFlight(1)
    cancelled = asyncio.Event()

    async def handler() -> None:
        try:
            await asyncio.Event().wait()  # a subscriber that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await in_flight.start(handler())
    await asyncio.sleep(0)
    await in_flight.cancel(finish=0.05)
    assert cancelled.is_set()
