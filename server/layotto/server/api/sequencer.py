"""The Sequencer API: GetNextId.

STRONG asks the store for every id. WEAK serves ids from a block the runtime reserved
from the store (``segmentSize`` ids at a time, the next block fetched in the background
when a tenth is left), which is much faster and still never repeats an id, but ids from
different runtimes interleave. **Without options the default is STRONG**, as Layotto's
proto documents (Layotto's code does WEAK); a client that sends options with WEAK — the
enum's zero value — gets WEAK.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.api.adapter import Context
from layotto.server.api.lock import require_resource
from layotto.server.components.base import Feature
from layotto.server.components.loader import ComponentSet
from layotto.server.components.lock import namespaced_key
from layotto.server.components.sequencer import Sequencer, floors
from layotto.server.errors import LayottoError

WEAK = pb.SequencerOptions.WEAK


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


class SequencerApi:
    def __init__(self, components: ComponentSet, app_id: str) -> None:
        self._components = components
        self._app_id = app_id
        self.cache = SegmentCache()
        self._floored: set[tuple[str, str]] = set()  # keys whose biggerThan floor this runtime applied

    async def _apply_floor(self, store: Sequencer, key: str, full_key: str) -> None:
        """Before a key's first id, jump its counter past the component's biggerThan for it.

        Reserving the missing ids as one block is atomic in every store, so runtimes starting
        together all end above the floor (the ids they skip are never handed out).
        """
        floor = floors(store.metadata).get(key)
        if floor is None or (store.name, full_key) in self._floored:
            return
        last = await store.next_block(full_key, 1)
        if last < floor:
            await store.next_block(full_key, floor - last)  # the counter now stands at the floor
        self._floored.add((store.name, full_key))

    async def GetNextId(self, request: pb.GetNextIdRequest, context: Context) -> pb.GetNextIdResponse:
        key = require_resource(request.key, "key")
        store = self._components.find("sequencer", request.store_name, "store_name")
        assert isinstance(store, Sequencer)
        strategy = str(store.metadata.get("keyPrefix", "appid"))
        full_key = namespaced_key("sequencer", strategy, self._app_id, store.name, key)
        await self._apply_floor(store, key, full_key)
        weak = request.HasField("options") and request.options.increment == WEAK
        if weak and store.supports(Feature.SEQUENCER_SEGMENTS):
            size = int(store.metadata.get("segmentSize", 1000))
            return pb.GetNextIdResponse(next_id=await self.cache.next_id(store, full_key, size))
        return pb.GetNextIdResponse(next_id=await store.next_block(full_key, 1))
