"""The sequencer's segment cache: blocks of ids reserved from a store, served from memory (WEAK)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from layotto.server.components.sequencer import Sequencer
from layotto.server.errors import LayottoError


@dataclass
class _Segment:
    next: int = 1
    last: int = 0  # next > last: empty
    prefetch: asyncio.Task[int] | None = None
    refill: asyncio.Lock = field(default_factory=asyncio.Lock)


class SegmentCache:
    """Blocks of ids reserved from the stores, per (store, key)."""

    def __init__(self) -> None:
        self._segments: dict[tuple[str, str], _Segment] = {}

    async def next_id(self, store: Sequencer, key: str, size: int) -> int:
        segment = self._segments.setdefault((store.name, key), _Segment())
        while segment.next > segment.last:
            async with segment.refill:
                if segment.next <= segment.last:
                    break
                last = await self._take_block(store, key, size, segment)
                segment.next, segment.last = last - size + 1, last
        value = segment.next
        segment.next += 1
        if segment.prefetch is None and segment.last - segment.next < max(1, size // 10):
            segment.prefetch = asyncio.create_task(store.next_block(key, size))
        return value

    async def _take_block(self, store: Sequencer, key: str, size: int, segment: _Segment) -> int:
        prefetch, segment.prefetch = segment.prefetch, None
        if prefetch is not None:
            with contextlib.suppress(LayottoError):
                return await prefetch  # a failed prefetch is retried below, in the caller's call
        return await store.next_block(key, size)

    async def aclose(self) -> None:
        for segment in self._segments.values():
            if segment.prefetch is not None:
                segment.prefetch.cancel()
