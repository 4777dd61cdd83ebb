"""stop_task: a background task that loses a cancellation still stops."""

from __future__ import annotations

import asyncio

import pytest

from layotto.server.aio import stop_task


async def stubborn(swallowed: list[int]) -> None:
    """Swallows its first cancellation, as a driver's asyncio.wait_for can under Python 3.11."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if not swallowed:
                swallowed.append(1)
                continue
            raise


async def test_a_task_that_loses_one_cancellation_is_stopped() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(stubborn(swallowed))
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task, patience=0.05), 5)
    assert task.cancelled() and swallowed == [1]


async def test_one_cancellation_alone_would_have_hung() -> None:
    task = asyncio.create_task(stubborn([]))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done  # the reason stop_task asks again
    await stop_task(task)


async def test_what_the_task_ended_with_is_raised() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await stop_task(task)
