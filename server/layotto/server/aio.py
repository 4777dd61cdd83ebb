"""Small asyncio helpers shared by the runtime's components and APIs."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any], *, patience: float = 0.1) -> None:
    """Cancel ``task`` and wait until it has ended; re-raise what it ended with, but a cancellation.

    One cancellation is not always enough: a driver can lose it (``asyncio.wait_for`` in Python
    3.11 drops a cancellation that meets an operation just finishing, and redis-py sends every
    command through it), and a background loop that retries on errors then runs on for ever, so
    whoever waits for it hangs. The task is cancelled again every ``patience`` seconds until it ends.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience)
    if not task.cancelled():
        task.result()
