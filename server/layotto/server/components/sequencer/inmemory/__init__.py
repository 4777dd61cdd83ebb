"""In-memory sequencer: counters in the runtime's memory (restart starts them again)."""

from __future__ import annotations

from layotto.server.components.base import KEY_PREFIX, ComponentSpec, Feature
from layotto.server.components.sequencer import BIGGER_THAN, SEGMENT_SIZE, Sequencer


class InMemorySequencer(Sequencer):
    spec = ComponentSpec(
        type="in-memory",
        building_block="sequencer",
        description="Counters in the runtime's memory: for tests and single-process use; a restart starts over.",
        features=frozenset({Feature.SEQUENCER_SEGMENTS}),
        metadata=(KEY_PREFIX, SEGMENT_SIZE, BIGGER_THAN),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._counters: dict[str, int] = {}

    async def next_block(self, key: str, size: int) -> int:
        last = self._counters.get(key, 0) + size
        self._counters[key] = last
        return last
