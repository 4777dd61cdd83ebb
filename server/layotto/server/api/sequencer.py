"""The Sequencer API: GetNextId.

STRONG asks the store for every id. WEAK serves ids from a block the runtime reserved
from the store (``segmentSize`` ids at a time, the next block fetched in the background
when a tenth is left), which is much faster and still never repeats an id, but ids from
different runtimes interleave. **Without options the default is STRONG**, as Layotto's
proto documents (Layotto's code does WEAK); a client that sends options with WEAK — the
enum's zero value — gets WEAK.
"""

from __future__ import annotations

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.api.adapter import Context
from layotto.server.components.base import Feature
from layotto.server.components.loader import ComponentSet
from layotto.server.components.sequencer import Sequencer, floors
from layotto.server.runtime.keys import namespaced_key
from layotto.server.runtime.sequencer import SegmentCache
from layotto.server.runtime.validation import require_enum, require_resource, require_storable

WEAK = pb.SequencerOptions.WEAK


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
        if request.HasField("options"):
            increments = {v.number: v.name for v in pb.SequencerOptions.AutoIncrement.DESCRIPTOR.values}
            require_enum(request.options.increment, increments, "options.increment")
        store = self._components.find("sequencer", request.store_name, "store_name")
        assert isinstance(store, Sequencer)
        strategy = str(store.metadata.get("keyPrefix", "appid"))
        full_key = namespaced_key("sequencer", strategy, self._app_id, store.name, key)
        what = f"sequencer {store.name!r} ({store.spec.type}), counting the key's namespace"
        require_storable(full_key, "key", store.spec.limits, what)
        await self._apply_floor(store, key, full_key)
        weak = request.HasField("options") and request.options.increment == WEAK
        if weak and store.supports(Feature.SEQUENCER_SEGMENTS):
            size = int(store.metadata.get("segmentSize", 1000))
            return pb.GetNextIdResponse(next_id=await self.cache.next_id(store, full_key, size))
        return pb.GetNextIdResponse(next_id=await store.next_block(full_key, 1))
